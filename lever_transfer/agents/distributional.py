"""Rainbow's pieces that are pure math: noisy layers, the dueling C51 head and the categorical
(C51) projection of a Bellman target onto a fixed support (n-step returns are summed by the
replay, ``EntryRing._returns``).

Kept apart from the agent (``rainbow.py``) so each can be checked against small hand-computed
cases. Sizes follow LeVER's table 5 and the
data-efficient Rainbow code: 256 hidden units, 51 atoms on [-10, 10], noisy sigma0 0.1.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..precision import Float32Output


class NoisyLinear(nn.Module):
    """Factorised-Gaussian noisy linear layer (Fortunato et al. 2018), as Rainbow uses it."""

    weight_epsilon: torch.Tensor  # buffers (register_buffer): torch types them as Tensor | Module
    bias_epsilon: torch.Tensor

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.1):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(
            torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))
        self.register_buffer("weight_epsilon", torch.zeros(out_features, in_features))
        self.register_buffer("bias_epsilon", torch.zeros(out_features))
        self.reset_noise()

    @staticmethod
    def _scaled(size: int, generator: torch.Generator | None) -> torch.Tensor:
        x = torch.randn(size, generator=generator)
        return x.sign() * x.abs().sqrt()

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        eps_in = self._scaled(self.in_features, generator)
        eps_out = self._scaled(self.out_features, generator)
        self.weight_epsilon.copy_(torch.outer(eps_out, eps_in))
        self.bias_epsilon.copy_(eps_out)

    def flops(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
        """Counted as the linear layer it is (appendix B: one multiply-add per weight, bias
        included); the noise terms are elementwise and not counted, as the paper does not."""
        return output.numel() // self.out_features * (self.in_features + 1) * self.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:  # acting greedily for evaluation: the mean network
            return F.linear(x, self.weight_mu, self.bias_mu)
        return F.linear(x, self.weight_mu + self.weight_sigma * self.weight_epsilon,
                        self.bias_mu + self.bias_sigma * self.bias_epsilon)


class DuelingC51Head(nn.Module):
    """Value and advantage streams (noisy, ``hidden`` units) -> log-probabilities over atoms."""

    def __init__(self, latent_dim: int, actions: int, hidden: int = 256, atoms: int = 51,
                 sigma0: float = 0.1):
        super().__init__()
        self.actions, self.atoms = actions, atoms
        self.value = Float32Output(NoisyLinear(latent_dim, hidden, sigma0), nn.ReLU(),
                                   NoisyLinear(hidden, atoms, sigma0))
        self.advantage = Float32Output(NoisyLinear(latent_dim, hidden, sigma0), nn.ReLU(),
                                       NoisyLinear(hidden, actions * atoms, sigma0))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, actions, atoms] log-probabilities (log-softmax over atoms), float32 (under bf16
        autocast the streams' hidden layers are bf16, their output layers float32)."""
        z = latent.flatten(1)
        value = self.value(z).view(-1, 1, self.atoms)
        advantage = self.advantage(z).view(-1, self.actions, self.atoms)
        return F.log_softmax(value + advantage - advantage.mean(1, keepdim=True), dim=2)

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        for module in self.modules():
            if isinstance(module, NoisyLinear):
                module.reset_noise(generator)


def project_distribution(next_probs: torch.Tensor, returns: torch.Tensor, discount: torch.Tensor,
                         support: torch.Tensor) -> torch.Tensor:
    """C51's projection of ``returns + discount * support`` (weighted by ``next_probs``, [B, atoms])
    back onto ``support`` (evenly spaced atoms): [B, atoms] target probabilities."""
    atoms = support.numel()
    v_min, v_max = float(support[0]), float(support[-1])
    delta = (v_max - v_min) / (atoms - 1)
    target = (returns[:, None] + discount[:, None] * support[None]).clamp(v_min, v_max)
    b = (target - v_min) / delta
    lower, upper = b.floor().long(), b.ceil().long()
    exact = (lower == upper).float()  # b on an atom: all of its mass goes there
    out = torch.zeros_like(next_probs)
    out.scatter_add_(1, lower, next_probs * (upper.float() - b + exact))
    out.scatter_add_(1, upper, next_probs * (b - lower.float()))
    return out
