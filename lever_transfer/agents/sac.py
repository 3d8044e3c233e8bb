"""What the SAC agents share (SAC+CURL, DrQ): their networks, freezing, FLOPs and packages.

A critic encoder whose convs the actor's encoder shares (CURL and DrQ tie them), each with its own
fc + LayerNorm (layer E = C+1), a target encoder, twin Q heads and their target, a tanh-Gaussian
actor and a learned temperature. The update (and its augmentation) is the subclass's; what a
zoo package holds of them, and the per-layer FLOPs table (table 2), are the same.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any, Mapping

import torch
from torch import nn

from ..encoders import FreezeSpec, LayeredEncoder, make_encoder, tied_encoder
from ..flops import LayerFlops, layer_table
from .base import Agent
from .networks import Actor, Critic, sac_heads, soft_update


class SacAgent(Agent):
    """SAC's networks over a tied critic/actor encoder; subclasses add the update."""

    critic_opt: torch.optim.Optimizer
    actor_opt: torch.optim.Optimizer
    alpha_opt: torch.optim.Optimizer

    def _build_networks(self, cfg: Any, channels: int, action_dim: int,
                        device: torch.device | str) -> None:
        """Encoders on ``crop_size`` inputs of ``channels``, twin Q heads and the actor, in the
        order the reference code builds them (so a seed gives the same initial weights)."""
        self.cfg = cfg
        self.device = torch.device(device)
        self.action_dim = action_dim
        s = cfg.agent
        channels_last = bool(cfg.channels_last) and self.device.type == "cpu"
        self.critic_encoder = make_encoder(cfg.encoder, (channels, cfg.crop_size, cfg.crop_size),
                                           cfg.feature_dim, cfg.num_filters, cfg.num_conv_layers,
                                           channels_last)
        self.actor_encoder = tied_encoder(self.critic_encoder)
        self.target_encoder = copy.deepcopy(self.critic_encoder).requires_grad_(False)
        self.critic = Critic(cfg.feature_dim, action_dim, cfg.hidden_dim)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = Actor(cfg.feature_dim, action_dim, cfg.hidden_dim, s.actor_log_std_min,
                           s.actor_log_std_max)

    def _build_temperature(self, cfg: Any) -> None:
        """The learned temperature, SAC's entropy target -|A|, and the agent's generator."""
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.agent.init_temperature)))
        self.target_entropy = -float(self.action_dim)
        self.num_shared = self.num_layers - 1  # C: the convs shared by critic and actor
        self.generator = torch.Generator().manual_seed(int(cfg.seed))

    @property
    def encoder(self) -> LayeredEncoder:  # type: ignore[override]  # the critic's, read-only
        return self.critic_encoder

    @property
    def update_period(self) -> int:
        """The actor (and temperature) step every ``actor_update_freq`` updates."""
        return int(self.settings.actor_update_freq)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def _both_latents(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 2, F]: critic and actor latents of one input batch, sharing the conv forward."""
        shared = self.critic_encoder(x, 0, self.num_shared)
        return torch.stack([self.critic_encoder(shared, self.num_shared),
                            self.actor_encoder(shared, self.num_shared)], dim=1)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(critic latent, shared conv output) of a layer-k input, with gradients where
        trainable."""
        k, c, enc = self.frozen_layers, self.num_shared, self.critic_encoder
        if k == self.num_layers:
            return x, x
        h = enc(x, k, c) if k < c else x
        return enc(h, c), h

    def freeze(self, n: FreezeSpec) -> int:
        """Freeze encoder layers 1..n of critic and actor; drop their optimizer state.

        Frozen target layers are hard-copied from the online ones (they stay tied), and when the
        whole encoder freezes the target critic is hard-copied too (the reference code's Tf).
        """
        n = self._freeze_layers(n, self.actor_encoder)
        if self.fully_frozen:
            self.target_critic.load_state_dict(self.critic.state_dict())
        return n

    def latent_spec(self, n: int) -> tuple[int, tuple[int, ...]]:
        """(N, feature shape) of the latent stored for layer n: N=2 (critic, actor) at the fc,
        N=1 at a shared conv layer."""
        shape = self.critic_encoder.output_shape(n)
        return (2 if n == self.num_layers else 1), shape

    def _update_targets(self) -> None:
        soft_update(self.critic, self.target_critic, self.settings.critic_tau)
        k = self.frozen_layers
        if k < self.num_layers:
            soft_update(self.critic_encoder.layers[k:], self.target_encoder.layers[k:],
                        self.settings.encoder_tau)

    # ----------------------------------------------------------------- FLOPs (appendix B)
    def layer_flops(self) -> list[LayerFlops]:
        """Forward FLOPs per sample of every layer, named as the paper's table 2."""
        enc = self.critic_encoder
        rows = layer_table(enc, torch.zeros((1, *enc.obs_shape), dtype=torch.uint8,
                                            device=self.device), prefix="encoder:")
        convs = [r for r in rows if r.kind == "Conv2d"]
        if len(convs) == enc.num_layers - 1:  # one conv per layer: use the paper's names
            convs = [replace(r, name=f"encoder:{n}") for r, n in zip(convs, enc.layer_names)]
        features = torch.zeros((1, self.cfg.feature_dim), device=self.device)
        action = torch.zeros((1, self.action_dim), device=self.device)
        enc_fc = [r for r in rows if r.kind == "Linear"][0]
        critic = layer_table(self.critic.q1, torch.cat([features, action], dim=1))
        actor = layer_table(self.actor.trunk, features)
        named = [replace(enc_fc, name="critic:fc1")]
        named += [replace(r, name=f"critic:fc{i + 2}") for i, r in enumerate(critic)]
        named += [replace(enc_fc, name="actor:fc1")]
        named += [replace(r, name=f"actor:fc{i + 2}") for i, r in enumerate(actor)]
        return convs + named

    # ----------------------------------------------------------------- zoo packages
    @classmethod
    def package_tensors(cls, weights: Mapping[str, torch.Tensor], num_layers: int,
                        with_heads: bool) -> dict[str, torch.Tensor]:
        """``encoder.`` (the critic's), ``actor_fc.`` (the actor's own fc; its convs are the
        critic's) and, with heads, ``heads.actor.`` / ``heads.critic.`` / ``heads.log_alpha``."""
        fc = f"actor_encoder.layers.{num_layers - 1}."
        out: dict[str, torch.Tensor] = {}
        for key, value in weights.items():
            if key.startswith("critic_encoder."):
                out["encoder." + key[len("critic_encoder."):]] = value
            elif key.startswith(fc):
                out["actor_fc." + key[len(fc):]] = value
            elif with_heads and key.startswith(("actor.", "critic.")):
                out["heads." + key] = value
            elif with_heads and key == "log_alpha":
                out["heads.log_alpha"] = value
        return out

    @classmethod
    def heads_config(cls, cfg: Any, action_size: int) -> dict[str, Any]:
        return {"kind": cls.entry().head_kind, "action_dim": action_size,
                "hidden_dim": cfg.hidden_dim}

    @classmethod
    def build_heads(cls, spec: Mapping[str, Any], feature_dim: int) -> nn.Module:
        return sac_heads(spec, feature_dim)

    @classmethod
    def action_size_of(cls, weights: Mapping[str, torch.Tensor], cfg: Any) -> int:
        # the actor's last layer outputs a mean and a log std per action dimension
        return int(weights["actor.trunk.4.weight"].shape[0]) // 2

    def load_package(self, package: Any, full: bool) -> None:
        encoder = package.part("encoder")
        self.critic_encoder.load_state_dict(encoder, strict=True)
        self.target_encoder.load_state_dict(encoder, strict=True)
        if "actor_fc" in package.config.parts:
            self.actor_encoder.layers[-1].load_state_dict(package.part("actor_fc"), strict=True)
        if not full:
            return
        heads = package.part("heads")
        self.actor.load_state_dict(_under("actor.", heads), strict=True)
        self.critic.load_state_dict(_under("critic.", heads), strict=True)
        self.target_critic.load_state_dict(_under("critic.", heads), strict=True)
        self.log_alpha.data.copy_(heads["log_alpha"])


def _under(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix``, named without it."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
