"""The MLP heads of SAC: a squashed-Gaussian actor and twin Q functions (CURL's sizes)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from ..encoders import orthogonal_init
from ..precision import Float32Output


def mlp(in_dim: int, hidden: int, out_dim: int) -> Float32Output:
    """Two hidden ReLU layers; the output layer in float32 under bf16 autocast."""
    net = Float32Output(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                        nn.Linear(hidden, out_dim))
    net.apply(orthogonal_init)
    return net


class Actor(nn.Module):
    """tanh-squashed Gaussian policy on a latent; log-std squashed into [min, max] as in SAC-AE."""

    def __init__(self, feature_dim: int, action_dim: int, hidden_dim: int,
                 log_std_min: float = -10.0, log_std_max: float = 2.0):
        super().__init__()
        self.trunk = mlp(feature_dim, hidden_dim, 2 * action_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, z: torch.Tensor, sample: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns (mean action, sampled action, log-prob of the sample), all squashed, in
        float32 (under bf16 autocast the trunk's hidden layers are bf16, its output float32)."""
        mu, log_std = self.trunk(z).chunk(2, dim=-1)
        log_std = torch.tanh(log_std)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (log_std + 1)
        if not sample:
            return torch.tanh(mu), torch.tanh(mu), None
        noise = torch.randn_like(mu)
        pi = mu + noise * log_std.exp()
        log_pi = (-0.5 * noise.pow(2) - log_std).sum(-1, keepdim=True)
        log_pi = log_pi - 0.5 * math.log(2 * math.pi) * noise.size(-1)
        mu, pi = torch.tanh(mu), torch.tanh(pi)
        log_pi = log_pi - torch.log(F.relu(1 - pi.pow(2)) + 1e-6).sum(-1, keepdim=True)
        return mu, pi, log_pi


class Critic(nn.Module):
    """Twin Q functions Q(z, a) that share nothing but their input."""

    def __init__(self, feature_dim: int, action_dim: int, hidden_dim: int):
        super().__init__()
        self.q1 = mlp(feature_dim + action_dim, hidden_dim, 1)
        self.q2 = mlp(feature_dim + action_dim, hidden_dim, 1)

    def forward(self, z: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        za = torch.cat([z, action], dim=-1)
        return self.q1(za), self.q2(za)  # float32 Q values (mlp's output layer) feed the losses


@torch.no_grad()
def soft_update(online: nn.Module, target: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, in one fused op per parameter list."""
    online_params = [p.data for p in online.parameters()]
    target_params = [p.data for p in target.parameters()]
    torch._foreach_lerp_(target_params, online_params, tau)


def sac_heads(spec: Mapping[str, Any], feature_dim: int) -> nn.Module:
    """SAC's package heads: ``actor.``, ``critic.`` and ``log_alpha``, sized by ``spec``."""
    heads = nn.Module()
    heads.actor = Actor(feature_dim, int(spec["action_dim"]), int(spec["hidden_dim"]))
    heads.critic = Critic(feature_dim, int(spec["action_dim"]), int(spec["hidden_dim"]))
    heads.log_alpha = nn.Parameter(torch.zeros(()))
    return heads
