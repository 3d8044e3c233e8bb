"""DrQ with LeVER: SAC from pixels regularised by random shifts, no contrastive pass.

DrQ (Kostrikov, Yarats & Fergus 2020, "Image Augmentation Is All You Need") trains SAC on shifted
views of the observation: every image is padded by ``image_pad`` pixels replicating its edges and
cropped back to its size at a random offset (``augment.random_shift``). Two averages regularise
the critic:

- K (``target_augmentations``): the Bellman target of a transition is the mean over K shifted
  views of the next observation of r + discount * (min target Q(view, a') - alpha log pi(a'|view)),
  a' ~ pi(.|view) drawn for each view (the paper's eq. 3; the reference code's K = 2 is
  ``next_obs`` and ``next_obs_aug``).
- M (``q_augmentations``): the critic loss is the mean over M shifted views of the observation of
  the twin-Q squared errors to that one target (eq. 4; the reference's ``obs`` and ``obs_aug``).

The encoder learns from the critic loss only: the actor's convs are the critic's (tied, as in
SAC-AE, CURL and DrQ) and reach the actor's loss detached, so that loss trains the actor's own
fc + LayerNorm and trunk. Layers are numbered as for ``SacCurlAgent``: 1..C shared convs, E = C+1
each network's own fc + LayerNorm; ``freeze``, ``latent_spec`` and ``encode_latents`` follow it,
with the K stored copies of a latent being K random *shifts* of the observation (LeVER is
agnostic to the base algorithm: the augmentation it stores is the one the algorithm trains with).

Where this differs from the reference DrQ code (github.com/denisyarats/drq), and why:
1. Shifts happen in the agent, on the training device, from the un-augmented stacks the pixel
   replay returns (the reference shifts inside its replay's ``sample``): the replay stays
   algorithm-agnostic and LeVER's conversion can draw its own K shifts.
2. The reference encoder ends in tanh(LayerNorm(fc)); this repo's encoders end at the LayerNorm
   (CURL's ``output_logits``). tanh has no parameters, so the agent applies it to every latent
   before a head; stored latents are the encoder's (pre-tanh) layer outputs, as for SacCurlAgent.
   So DrQ's heads read tanh(latent) where SacCurlAgent's read the latent: packages share one
   layout, but heads of one are not heads of the other (``transfer: full`` across the two).
3. The critic loss is the MEAN over the M views (the paper's 1/M); the reference SUMS its two
   terms. Adam is invariant to the loss scale (up to eps), and the mean keeps ``critic_loss``
   comparable with SacCurlAgent's and across M.
4. One forward per batch of views: the M shifted observations are one [M*B] batch through the
   critic encoder, the K shifted next observations one [K*B] batch through the online convs (the
   next actions) and one through the target encoder; their K*B next-action noises are one draw.
   Frozen lower layers are computed once and shared by online and target encoders (identical).
5. The actor and temperature losses use the first shifted view of the observation (the
   reference's ``obs``) with the critic latent computed before this update's critic step; the
   reference recomputes the (detached) critic encoder after the step, another conv forward for
   a latent one Adam step older. Q heads are the updated ones, as in the reference. (Same choice
   as SacCurlAgent's point 3.)
6. The actor's optimizer holds the actor trunk and the actor's own fc + LayerNorm only; the
   reference lists the tied convs too, where the detached loss always gives them a zero gradient.
7. Frozen layers of the target encoder are tied to the online ones and not soft-updated (they are
   equal); trainable ones move with ``encoder_tau`` (the reference's ``critic_tau``: its target
   critic contains its encoder).
8. After Tf (whole encoder frozen), as the reference LeVER code does for CURL: the target critic is
   hard-copied once, target Q values use the stored online latents of the next observation (tied
   target latents), and only the Q heads, actor trunk and temperature train. A ``LatentBatch``
   holds ONE of the K stored shifted copies per transition (the same copy for the observation and
   the next observation, ``LatentReplay.sample``): that copy is the update's augmentation, so a
   latent update averages over one view and the stored shifts are averaged across updates. A
   partial freeze (latents at a conv) trains the remaining layers on the stored copies the same way.
9. The discount comes from the replay (gamma**n, 0 at a termination), as for every agent here; DMC
   never terminates, which is the reference's ``not_done_no_max``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..augment import center_crop, random_shift
from ..replay import LatentBatch, PixelBatch
from .base import UpdateResult, mixed_precision
from .sac import SacAgent


@dataclass(frozen=True)
class Views:
    """An update's inputs at the first trainable layer k (uint8 pixels when k == 0).

    ``obs`` holds M views of each observation as one batch, copy m of sample b at row m*B + b;
    ``next_obs`` K views of each next observation the same way. When the whole encoder is frozen
    they are the critic's raw latents and ``obs_actor`` / ``next_actor`` the actor's.
    """

    obs: torch.Tensor
    next_obs: torch.Tensor
    obs_actor: torch.Tensor | None = None
    next_actor: torch.Tensor | None = None


class DrQAgent(SacAgent):
    """All DrQ networks and optimizers; see the module docstring for the update."""

    name = "drq"

    def __init__(self, cfg: Any, obs_shape: tuple[int, int, int], action_dim: int,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.size = int(cfg.crop_size)  # what the encoder sees: DrQ renders at it (84)
        self._build_networks(cfg, obs_shape[0], action_dim, device)
        self._build_temperature(cfg)
        self.to(self.device)
        self._build_optimizers()

    # ----------------------------------------------------------------- set-up and freezing
    def _build_optimizers(self) -> None:
        s = self.settings
        adam = functools.partial(torch.optim.Adam, fused=True)  # one kernel per step
        self.critic_opt = adam([*self.critic.parameters(),
                                *self.critic_encoder.trainable_parameters()], lr=s.critic_lr)
        self.actor_opt = adam(
            [*self.actor.parameters(), *self.actor_encoder.layers[-1].parameters()], lr=s.actor_lr)
        self.alpha_opt = adam([self.log_alpha], lr=s.alpha_lr, betas=(s.alpha_beta1, 0.999))

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_opt, "actor": self.actor_opt, "alpha": self.alpha_opt}

    # ----------------------------------------------------------------- acting and encoding
    @mixed_precision
    @torch.no_grad()
    def act(self, obs: np.ndarray, sample: bool) -> np.ndarray:
        """Action for one uint8 observation, un-shifted (DrQ acts and evaluates without
        augmentation)."""
        z = torch.tanh(self.actor_encoder(center_crop(self._tensor(obs)[None], self.size)))
        mu, pi, _ = self.actor(z, sample=sample)
        return (pi if sample else mu)[0].cpu().numpy()

    def _shifts(self, x: torch.Tensor, copies: int) -> torch.Tensor:
        """[copies * B, ...]: ``copies`` independent random shifts of a uint8 batch, copy-major."""
        return random_shift(x.repeat(copies, 1, 1, 1), self.size, self.settings.image_pad,
                            self.generator)

    @mixed_precision
    @torch.no_grad()
    def encode_latents(self, stacks: np.ndarray, augmentations: int) -> np.ndarray:
        """Latents to store for uint8 stacks [n, S*C, H, W]: [n, K, N, *feature], K random shifts.

        Both networks' latents of copy k come from the same shifted view, so a sampled k gives a
        consistent (critic latent, actor latent) pair.
        """
        n, x = self.frozen_layers, self._tensor(stacks)
        views = self._shifts(x, augmentations)  # one forward for all K views: [K * n, ...]
        if n < self.num_layers:
            latents = self.critic_encoder(views, 0, n)[:, None]
        else:
            latents = self._both_latents(views)
        latents = latents.reshape(augmentations, len(x), *latents.shape[1:]).transpose(0, 1)
        return latents.float().cpu().numpy()

    # ----------------------------------------------------------------- updates
    def _pixel_views(self, batch: PixelBatch) -> Views:
        """M shifts of the observations, then K of the next ones; frozen layers run once, without
        gradients (their output is shared by the online and target encoders)."""
        s, k, enc = self.settings, self.frozen_layers, self.critic_encoder
        obs, next_obs = self._tensor(batch.obs), self._tensor(batch.next_obs)
        with torch.no_grad():
            obs_views = self._shifts(obs, s.q_augmentations)
            next_views = self._shifts(next_obs, s.target_augmentations)
            if self.fully_frozen:  # pixels kept although nothing trains in the encoder
                z, z_next = self._both_latents(obs_views), self._both_latents(next_views)
                return Views(z[:, 0], z_next[:, 0], z[:, 1], z_next[:, 1])
            if k == 0:
                return Views(obs_views, next_views)
            return Views(enc(obs_views, 0, k), enc(next_views, 0, k))

    def _latent_views(self, batch: LatentBatch) -> Views:
        """The replay's sampled copy is the one view of each observation (K = M = 1)."""
        latent, nxt = self._tensor(batch.latent), self._tensor(batch.next_latent)
        if latent.shape[1] == 2:
            return Views(latent[:, 0], nxt[:, 0], latent[:, 1], nxt[:, 1])
        return Views(latent[:, 0], nxt[:, 0])

    @mixed_precision
    def update(self, batch: PixelBatch | LatentBatch, step: int) -> UpdateResult:
        views = (self._latent_views(batch) if isinstance(batch, LatentBatch)
                 else self._pixel_views(batch))
        action = self._tensor(batch.action)
        reward = self._tensor(batch.reward)[:, None]
        discount = self._tensor(batch.discount)[:, None]  # gamma**n (0: terminated), from replay
        with torch.no_grad():
            target = self._target(views, reward, discount)
        metrics, z_obs, h_obs = self._update_critic(views, action, target)
        if step % self.settings.actor_update_freq == 0:
            metrics.update(self._update_actor(views, z_obs, h_obs))
        if step % self.settings.critic_target_update_freq == 0:
            self._update_targets()
        return UpdateResult(metrics)

    def _target(self, views: Views, reward: torch.Tensor, discount: torch.Tensor) -> torch.Tensor:
        """[B, 1]: the soft Bellman target averaged over the K views of the next observation."""
        k, c = self.frozen_layers, self.num_shared
        if self.fully_frozen:  # tied target latents: the stored online latents
            assert views.next_actor is not None  # fully frozen views carry the actor's latents
            z_actor, z_target = views.next_actor, views.next_obs
        else:
            nxt = views.next_obs
            z_actor = self.actor_encoder(self.critic_encoder(nxt, k, c) if k < c else nxt, c)
            z_target = self.target_encoder(self.target_encoder(nxt, k, c) if k < c else nxt, c)
        _, next_pi, next_log_pi = self.actor(torch.tanh(z_actor))
        value = torch.min(*self.target_critic(torch.tanh(z_target), next_pi))
        value = value - self.alpha.detach() * next_log_pi  # [K * B, 1]
        value = value.view(-1, len(reward), 1).mean(dim=0)  # the average over the K views
        return reward + discount * value

    def _update_critic(self, views: Views, action: torch.Tensor, target: torch.Tensor
                       ) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
        batch_size = len(target)
        copies = len(views.obs) // batch_size  # M
        z_raw, h = self._features(views.obs)
        q1, q2 = self.critic(torch.tanh(z_raw), action.repeat(copies, 1))
        y = target.repeat(copies, 1)  # every view of an observation regresses to its one target
        critic_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)  # = the mean over the M views
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        metrics = {"critic_loss": critic_loss.item(), "q": q1.mean().item()}
        # the actor trains on the first view (the reference's ``obs``), its conv input detached
        return metrics, z_raw[:batch_size].detach(), h[:batch_size].detach()

    def _update_actor(self, views: Views, z_critic: torch.Tensor, h: torch.Tensor
                      ) -> dict[str, float]:
        if self.fully_frozen:
            assert views.obs_actor is not None  # fully frozen views carry the actor's latents
            z_actor = views.obs_actor[: len(z_critic)]
        else:  # h is detached: the actor's loss reaches its own fc + LayerNorm, not the convs
            z_actor = self.actor_encoder(h, self.num_shared)
        _, pi, log_pi = self.actor(torch.tanh(z_actor))
        self.critic.requires_grad_(False)  # the actor loss needs dQ/da only, not critic grads
        actor_q = torch.min(*self.critic(torch.tanh(z_critic), pi))
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
