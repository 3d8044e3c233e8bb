"""Data-efficient Rainbow with LeVER: train the DER encoder, freeze it at Tf, then train only the
dueling noisy C51 heads on stored latents (appendix A, algorithm 1; appendix H, table 5).

The loop hands ``update`` a ``PixelBatch`` (uint8 [B, 4, 84, 84] stacks) or, after Tf, a
``LatentBatch`` (the frozen encoder's 576 outputs), both with n-step returns and the factor on
the bootstrapped value already summed by the replay. Discrete actions arrive as their index in
a one-element action.

Where this differs from the reference code (Kaixhin's Rainbow in the data-efficient setting, as
the LeVER code used it), and why:
1. Uniform replay and a plain mean loss by default, as the reference LeVER code ran both arms
   (its sum tree had index errors). With ``prioritized_replay`` the loss is weighted by the
   batch's importance weights and ``update`` returns each sample's loss
   (``UpdateResult.priorities``)
   for the replay's new priorities, as in Rainbow.
2. One forward per input: the frozen lower layers (if some are frozen and pixels are kept) run
   once without gradients for the online and target networks, whose frozen layers are equal.
3. After Tf (whole encoder frozen) the target network reads the stored online latents (its
   encoder is the frozen online one, as in the reference), and no encoder layer runs in an
   update. The target heads still follow the online heads every ``target_update_period``
   updates.
4. Online noise is resampled before every training action (the reference does so every
   ``replay_frequency`` = 1 steps) and the target network's before every update, as in the
   reference; both draw from the agent's own generator, so a resumed run replays the same noise.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..encoders import FreezeSpec, make_encoder
from ..flops import LayerFlops, layer_table
from ..replay import LatentBatch, PixelBatch, PrioritizedSampler, Sampler, UniformSampler
from ..zoo.config import MAX_LAYER_SIZE
from .base import Agent, UpdateResult, mixed_precision
from .distributional import DuelingC51Head, project_distribution


class RainbowAgent(Agent):
    """Online and target (encoder, dueling C51 head) pairs and one Adam optimizer."""

    name = "rainbow"
    support: torch.Tensor  # a buffer (register_buffer): torch types it as Tensor | Module

    def __init__(self, cfg: Any, obs_shape: tuple[int, int, int], num_actions: int,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.cfg = cfg
        self.device = torch.device(device)
        self.num_actions = int(num_actions)
        channels_last = bool(cfg.channels_last) and self.device.type == "cpu"
        self.encoder = make_encoder(cfg.encoder, obs_shape, cfg.feature_dim, cfg.num_filters,
                                    cfg.num_conv_layers, channels_last)
        s = cfg.agent
        latent_dim = math.prod(self.encoder.output_shape(self.encoder.num_layers))
        self.head = DuelingC51Head(latent_dim, self.num_actions, cfg.hidden_dim, s.atoms,
                                   s.noisy_sigma)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("support", torch.linspace(s.v_min, s.v_max, s.atoms))
        self.generator = torch.Generator().manual_seed(int(cfg.seed))
        self.to(self.device)
        self.optimizer = torch.optim.Adam([
            {"params": list(self.head.parameters()), "lr": s.lr},
            {"params": self.encoder.trainable_parameters(), "lr": s.encoder_lr},
        ], eps=s.adam_eps, fused=True)  # one kernel per step (a third of a latent update)

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"q": self.optimizer}

    def freeze(self, n: FreezeSpec) -> int:
        """Freeze encoder layers 1..n; the target's copies become (and stay) equal to them."""
        return self._freeze_layers(n)

    def latent_spec(self, n: int) -> tuple[int, tuple[int, ...]]:
        """(N, feature shape) stored for layer n: one network (the heads share the latent)."""
        return 1, self.encoder.output_shape(n)

    def replay_sampler(self, first_update: int, last_step: int) -> Sampler:
        """Uniform, as the reference LeVER code ran; with ``prioritized_replay`` Rainbow's
        prioritized replay, beta annealed from ``priority_weight`` at the first update to 1."""
        s = self.settings
        if not s.prioritized_replay:
            return UniformSampler()
        return PrioritizedSampler(s.priority_exponent, s.priority_weight, first_update, last_step)

    # ----------------------------------------------------------------- acting and encoding
    def _q_values(self, head: nn.Module, latent: torch.Tensor) -> torch.Tensor:
        return (head(latent).exp() * self.support).sum(-1)

    @mixed_precision
    @torch.no_grad()
    def act(self, obs: np.ndarray, sample: bool) -> int:
        """Greedy action of the noisy network (fresh noise) when training; when evaluating, the
        mean network with ``eval_epsilon`` random actions (data-efficient Rainbow's 0.001)."""
        if not sample and torch.rand((), generator=self.generator) < self.settings.eval_epsilon:
            return int(torch.randint(self.num_actions, (), generator=self.generator))
        self.head.train(sample)
        if sample:
            self.head.reset_noise(self.generator)
        q = self._q_values(self.head, self.encoder(self._tensor(obs)[None]))
        self.head.train(True)
        return int(q.argmax(1)[0])

    @mixed_precision
    @torch.no_grad()
    def encode_latents(self, stacks: np.ndarray, augmentations: int) -> np.ndarray:
        """Latents to store for uint8 stacks [n, 4, 84, 84]: [n, K, 1, *feature]. Atari has no
        augmentation (table 5), so the K copies are equal; recipes use K = 1."""
        latent = self.encoder(self._tensor(stacks), 0, self.frozen_layers)
        latent = latent[:, None, None].expand(-1, augmentations, 1, *latent.shape[1:])
        return latent.float().cpu().numpy()

    # ----------------------------------------------------------------- updates
    def _inputs(self, batch: PixelBatch | LatentBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The update's inputs at the first trainable layer (frozen layers run once, no grad)."""
        if isinstance(batch, LatentBatch):
            return self._tensor(batch.latent)[:, 0], self._tensor(batch.next_latent)[:, 0]
        obs, next_obs = self._tensor(batch.obs), self._tensor(batch.next_obs)
        with torch.no_grad():
            k = self.frozen_layers
            return self.encoder(obs, 0, k), self.encoder(next_obs, 0, k)

    def _above_frozen(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The trainable layers of ``encoder`` on a first-trainable-layer input (no call at all
        once every layer is frozen: after Tf no encoder module runs in an update)."""
        k = self.frozen_layers
        return encoder(x, k) if k < self.num_layers else x

    @mixed_precision
    def update(self, batch: PixelBatch | LatentBatch, step: int) -> UpdateResult:
        x, x_next = self._inputs(batch)
        batch_index = torch.arange(len(x), device=self.device)
        action = self._tensor(batch.action)[:, 0].long()
        with torch.no_grad():
            z_next = self._above_frozen(self.encoder, x_next)
            z_next_target = self._above_frozen(self.target_encoder, x_next)
            best = self._q_values(self.head, z_next).argmax(1)  # double Q: online chooses
            self.target_head.reset_noise(self.generator)
            next_probs = self.target_head(z_next_target).exp()[batch_index, best]
            target = project_distribution(next_probs, self._tensor(batch.reward),
                                          self._tensor(batch.discount), self.support)
        z = self._above_frozen(self.encoder, x)
        log_probs = self.head(z)[batch_index, action]
        sample_loss = -(target * log_probs).sum(1)
        loss = (sample_loss * self._tensor(batch.weights)).mean() if batch.weights is not None \
            else sample_loss.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.settings.max_grad_norm is not None:
            nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                     self.settings.max_grad_norm)
        self.optimizer.step()
        if step % self.settings.target_update_period == 0:
            self._update_target()
        q = (log_probs.detach().exp() * self.support).sum(1)
        metrics = {"loss": loss.item(), "q": q.mean().item()}
        priorities = sample_loss.detach().cpu().numpy() if batch.weights is not None else None
        return UpdateResult(metrics, priorities)

    @torch.no_grad()
    def _update_target(self) -> None:
        """Hard copy of the heads and the trainable encoder layers (frozen ones are equal)."""
        self.target_head.load_state_dict(self.head.state_dict())
        k = self.frozen_layers
        for online, target in zip(self.encoder.layers[k:], self.target_encoder.layers[k:]):
            target.load_state_dict(online.state_dict())

    # ----------------------------------------------------------------- FLOPs (appendix B)
    def layer_flops(self) -> list[LayerFlops]:
        """Forward FLOPs per sample of every layer, named as the paper's table 3."""
        enc = self.encoder
        rows = layer_table(enc, torch.zeros((1, *enc.obs_shape), dtype=torch.uint8,
                                            device=self.device), prefix="encoder:")
        convs = [r for r in rows if r.kind == "Conv2d"]
        if len(convs) == enc.num_layers:  # one conv per layer: the paper's names
            rows = [replace(r, name=f"encoder:{n}") for r, n in zip(convs, enc.layer_names)]
        latent = torch.zeros((1, math.prod(enc.output_shape(enc.num_layers))),
                             device=self.device)
        names = {"value.0": "value stream:fc1", "value.2": "value stream:fc2",
                 "advantage.0": "advantage stream:fc1", "advantage.2": "advantage stream:fc2"}
        heads = [replace(r, name=names.get(r.name, r.name))
                 for r in layer_table(self.head, latent)]
        return rows + heads

    # ----------------------------------------------------------------- zoo packages
    @classmethod
    def package_tensors(cls, weights: Mapping[str, torch.Tensor], num_layers: int,
                        with_heads: bool) -> dict[str, torch.Tensor]:
        """``encoder.`` and, with heads, the dueling C51 head as ``heads.``."""
        out = {k: v for k, v in weights.items() if k.startswith("encoder.")}
        if with_heads:
            out.update({"heads." + k[len("head."):]: v for k, v in weights.items()
                        if k.startswith("head.")})
        return out

    @classmethod
    def heads_config(cls, cfg: Any, action_size: int) -> dict[str, Any]:
        return {"kind": cls.entry().head_kind, "action_dim": action_size,
                "hidden_dim": cfg.hidden_dim, "atoms": cfg.agent.atoms}

    @classmethod
    def build_heads(cls, spec: Mapping[str, Any], feature_dim: int) -> nn.Module:
        """The dueling C51 head over the encoder's flattened output (``feature_dim``)."""
        atoms = int(spec["atoms"])
        if not 2 <= atoms <= MAX_LAYER_SIZE:
            raise ValueError(f"atoms {atoms} out of 2..{MAX_LAYER_SIZE}")
        return DuelingC51Head(feature_dim, int(spec["action_dim"]), int(spec["hidden_dim"]), atoms)

    @classmethod
    def action_size_of(cls, weights: Mapping[str, torch.Tensor], cfg: Any) -> int:
        # the advantage stream outputs atoms per action
        return int(weights["head.advantage.2.bias_mu"].shape[0]) // cfg.agent.atoms

    def load_package(self, package: Any, full: bool) -> None:
        encoder = package.part("encoder")
        self.encoder.load_state_dict(encoder, strict=True)
        self.target_encoder.load_state_dict(encoder, strict=True)
        if full:
            self.head.load_state_dict(package.part("heads"), strict=True)
            self.target_head.load_state_dict(package.part("heads"), strict=True)
