"""SAC + CURL with LeVER: train the encoder, freeze it at Tf, then train only the heads on latents.

The agent only exposes ``act`` and ``update(batch, step) -> metrics``; the training loop owns the
environment, the replay and the logger. An update starts from whatever the replay holds: a
``PixelBatch`` (render-size uint8 stacks, cropped here) or a ``LatentBatch`` (outputs of the frozen
encoder). Layers 1..C are convs shared by the critic and the actor (as in CURL: the actor's convs
are tied to the critic's), layer E = C+1 is each network's own fc + LayerNorm.

Where this update differs from the reference CURL / LeVER code, and why:
1. One conv forward per input, shared. The reference runs the critic's encoder on the observation
   three times per update (critic loss, actor loss with a detached encoder, CURL anchor) and the
   actor's tied convs on it once more; here the anchor *is* the critic's crop (as in the reference)
   and one forward serves the critic, CURL and (detached) the actor. Next observations go through
   the online convs once (for the next action) and the target convs once, batched with CURL's
   positive crops. Frozen lower layers are computed once and shared by online and target
   encoders, whose frozen layers are identical (hard-copied at freezing).
2. One backward for critic + CURL. The reference steps the encoder with three Adam optimizers (the
   critic's, the encoder's and CURL's, whose parameter lists overlap); here the critic loss and
   the contrastive loss are summed and the encoder takes one Adam step, at ``encoder_lr``
   (equal to the critic's learning rate in every table-4 setting).
3. The actor loss uses the critic latent computed before this update's critic step (the reference
   recomputes the encoder after the step, at the cost of another conv and fc forward). Q heads
   are the updated ones, as in the reference.
4. Frozen layers of the target encoder are tied to the online ones and not soft-updated (they are
   equal); trainable layers are soft-updated with ``encoder_tau`` as in the reference.
5. After Tf (whole encoder frozen), as the reference LeVER code does: the target critic is
   hard-copied from the online critic once, target Q values use the stored online latents of the
   next observation (tied target latents), CURL and the encoder EMA stop, and only the Q heads,
   the actor trunk and the temperature train. No encoder layer runs in an update.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..augment import center_crop, random_crop
from ..precision import full_precision
from ..replay import LatentBatch, PixelBatch
from .base import UpdateResult, mixed_precision
from .sac import SacAgent


@dataclass(frozen=True)
class Inputs:
    """An update's inputs at the first trainable layer ``k`` (pixels when k == 0).

    For k < E the critic and actor share the input (convs are shared); at k == E each network
    has its own latent (``obs_actor`` / ``next_actor``). With CURL, ``next_obs`` and ``positive``
    are the two halves of ``target_input``, the one batch the target encoder reads.
    """

    obs: torch.Tensor
    next_obs: torch.Tensor
    positive: torch.Tensor | None = None
    obs_actor: torch.Tensor | None = None
    next_actor: torch.Tensor | None = None
    target_input: torch.Tensor | None = None


class SacCurlAgent(SacAgent):
    """All SAC+CURL networks and optimizers; see the module docstring for the update order."""

    name = "sac_curl"

    def __init__(self, cfg: Any, obs_shape: tuple[int, int, int], action_dim: int,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.crop = cfg.crop_size
        self._build_networks(cfg, obs_shape[0], action_dim, device)
        self.curl_w = nn.Parameter(torch.rand(cfg.feature_dim, cfg.feature_dim))
        self._build_temperature(cfg)
        self.to(self.device)
        self._build_optimizers()

    # ----------------------------------------------------------------- set-up and freezing
    def _build_optimizers(self) -> None:
        s = self.settings
        adam = functools.partial(torch.optim.Adam, fused=True)  # one kernel per step, CPU and GPU
        self.critic_opt = adam([
            {"params": list(self.critic.parameters()), "lr": s.critic_lr},
            {"params": self.critic_encoder.trainable_parameters(), "lr": s.encoder_lr},
        ])
        self.actor_opt = adam(
            [*self.actor.parameters(), *self.actor_encoder.layers[-1].parameters()],
            lr=s.actor_lr)
        self.alpha_opt = adam([self.log_alpha], lr=s.alpha_lr, betas=(s.alpha_beta1, 0.999))
        self.curl_opt = adam([self.curl_w], lr=s.encoder_lr)

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_opt, "actor": self.actor_opt, "alpha": self.alpha_opt,
                "curl": self.curl_opt}

    @property
    def uses_curl(self) -> bool:
        """CURL trains the critic's encoder, so it stops once nothing in it is trainable."""
        return not self.fully_frozen

    # ----------------------------------------------------------------- acting and encoding
    @mixed_precision
    @torch.no_grad()
    def act(self, obs: np.ndarray, sample: bool) -> np.ndarray:
        """Action for one uint8 observation, from its centre crop (as CURL acts and evaluates)."""
        x = center_crop(self._tensor(obs)[None], self.crop)
        z = self.actor_encoder(x)
        mu, pi, _ = self.actor(z, sample=sample)
        return (pi if sample else mu)[0].cpu().numpy()

    @mixed_precision
    @torch.no_grad()
    def encode_latents(self, stacks: np.ndarray, augmentations: int) -> np.ndarray:
        """Latents to store for uint8 stacks [n, S*C, H, W]: [n, K, N, *feature], K random crops.

        Both networks' latents of copy k come from the same crop, so a sampled k gives a
        consistent (critic latent, actor latent) pair.
        """
        n, x = self.frozen_layers, self._tensor(stacks)
        crops = torch.cat([random_crop(x, self.crop, self.generator) for _ in range(augmentations)])
        if n < self.num_layers:  # one forward for all K crops: [K * n, ...]
            latents = self.critic_encoder(crops, 0, n)[:, None]
        else:
            latents = self._both_latents(crops)
        latents = latents.reshape(augmentations, len(x), *latents.shape[1:]).transpose(0, 1)
        return latents.float().cpu().numpy()

    # ----------------------------------------------------------------- updates
    def _pixel_inputs(self, batch: PixelBatch) -> Inputs:
        """Crop, then run the frozen layers once without gradients (shared by online/target)."""
        k, enc = self.frozen_layers, self.critic_encoder
        obs, next_obs = self._tensor(batch.obs), self._tensor(batch.next_obs)
        with torch.no_grad():
            anchor = random_crop(obs, self.crop, self.generator)
            nxt = random_crop(next_obs, self.crop, self.generator)
            if self.fully_frozen:  # pixels kept although nothing trains in the encoder
                z, z_next = self._both_latents(anchor), self._both_latents(nxt)
                return Inputs(z[:, 0], z_next[:, 0], None, z[:, 1], z_next[:, 1])
            if not self.uses_curl:
                return Inputs(enc(anchor, 0, k), enc(nxt, 0, k))
            # next crops and CURL positives as one uint8 batch: one conversion, no float copy
            positive = random_crop(obs, self.crop, self.generator)
            pair = enc(torch.cat([nxt, positive]), 0, k)
            batch_size = len(anchor)
            return Inputs(enc(anchor, 0, k), pair[:batch_size], pair[batch_size:],
                          target_input=pair)

    def _latent_inputs(self, batch: LatentBatch) -> Inputs:
        latent, nxt = self._tensor(batch.latent), self._tensor(batch.next_latent)
        if latent.shape[1] == 2:
            return Inputs(latent[:, 0], nxt[:, 0], None, latent[:, 1], nxt[:, 1])
        return Inputs(latent[:, 0], nxt[:, 0])

    @mixed_precision
    def update(self, batch: PixelBatch | LatentBatch, step: int) -> UpdateResult:
        inputs = (self._latent_inputs(batch) if isinstance(batch, LatentBatch)
                  else self._pixel_inputs(batch))
        action = self._tensor(batch.action)
        reward = self._tensor(batch.reward)[:, None]
        discount = self._tensor(batch.discount)[:, None]  # gamma**n (0: terminated), from replay
        metrics, z_obs, h_obs = self._update_critic(inputs, action, reward, discount)
        if step % self.settings.actor_update_freq == 0:
            actor_in = inputs.obs_actor if self.fully_frozen else h_obs
            assert actor_in is not None  # fully frozen inputs carry the actor's latents
            metrics.update(self._update_actor(z_obs, actor_in))
        if step % self.settings.critic_target_update_freq == 0:
            self._update_targets()
        return UpdateResult(metrics)

    def _targets(self, inputs: Inputs, reward: torch.Tensor, discount: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Bellman targets (and CURL positives), all without gradients."""
        k, c = self.frozen_layers, self.num_shared
        if self.fully_frozen:  # tied target latents: the stored online latents
            z_next_actor, z_next_target, z_pos = inputs.next_actor, inputs.next_obs, None
        else:
            h_next = self.critic_encoder(inputs.next_obs, k, c) if k < c else inputs.next_obs
            z_next_actor = self.actor_encoder(h_next, c)
            pair = inputs.next_obs if inputs.positive is None else inputs.target_input
            h_target = self.target_encoder(pair, k, c) if k < c else pair
            z_target = self.target_encoder(h_target, c)
            z_next_target, z_pos = z_target[: len(reward)], z_target[len(reward):]
            z_pos = z_pos if inputs.positive is not None else None
        _, next_pi, next_log_pi = self.actor(z_next_actor)
        target_q = torch.min(*self.target_critic(z_next_target, next_pi))
        target_q = target_q - self.alpha.detach() * next_log_pi
        return reward + discount * target_q, z_pos

    def _update_critic(self, inputs: Inputs, action: torch.Tensor, reward: torch.Tensor,
                       discount: torch.Tensor
                       ) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            target, z_pos = self._targets(inputs, reward, discount)
        z_obs, h_obs = self._features(inputs.obs)
        q1, q2 = self.critic(z_obs, action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        loss = critic_loss
        metrics = {"critic_loss": critic_loss.item(), "q": q1.mean().item()}
        if z_pos is not None:
            with full_precision(self.device):  # CURL's bilinear logits in float32
                logits = z_obs.float() @ self.curl_w @ z_pos.float().T
            logits = logits - logits.max(dim=1, keepdim=True).values
            labels = torch.arange(len(logits), device=logits.device)
            curl_loss = F.cross_entropy(logits, labels)
            loss = loss + curl_loss
            metrics["curl_loss"] = curl_loss.item()
        self.critic_opt.zero_grad(set_to_none=True)
        self.curl_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        if z_pos is not None:
            self.curl_opt.step()
        return metrics, z_obs.detach(), h_obs.detach()

    def _update_actor(self, z_critic: torch.Tensor, actor_in: torch.Tensor) -> dict[str, float]:
        z_actor = actor_in if self.fully_frozen else self.actor_encoder(actor_in, self.num_shared)
        _, pi, log_pi = self.actor(z_actor)
        self.critic.requires_grad_(False)  # the actor loss needs dQ/da only, not critic grads
        actor_q = torch.min(*self.critic(z_critic, pi))
        self.critic.requires_grad_(True)
        actor_loss = (self.alpha.detach() * log_pi - actor_q).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        alpha_loss = (self.alpha * (-log_pi - self.target_entropy).detach()).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        return {"actor_loss": actor_loss.item(), "alpha": self.alpha.item(),
                "entropy": -log_pi.mean().item()}
