"""The agent protocol: everything the loop, the zoo and the FLOPs count ask of an algorithm.

An agent owns its networks, optimizers and a torch generator (crops, noise, exploration). The
loop asks it to ``act``, to ``update(batch, step) -> UpdateResult``, to ``freeze`` at Tf and to
``encode_latents`` for the replay; the zoo asks which of its weights a package holds
(``package_tensors``, ``heads_config``) and to ``load_package`` one; ``lever-transfer flops``
reads ``layer_flops`` and ``update_period``. Only agent modules know parameter names. Keeping
the checkpoint format here means a resumed run restores any agent the same way: weights,
optimizer states, generator state, frozen layer count.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, TypeVar

import numpy as np
import torch
from torch import nn

from ..encoders import LayeredEncoder
from ..flops import LayerFlops
from ..precision import autocast, resolve_precision
from ..registry import AGENTS, AgentEntry
from ..replay import Sampler, UniformSampler

_HYPERPARAMETERS = ("lr", "eps", "betas")  # what an optimizer group takes from the config
Method = TypeVar("Method", bound=Callable[..., Any])


def mixed_precision(method: Method) -> Method:
    """Run an agent method (act, update, encode_latents) under the agent's precision: bf16
    autocast around its forward and backward passes, or nothing for fp32."""
    @functools.wraps(method)
    def wrapper(self: "Agent", *args: Any, **kwargs: Any) -> Any:
        with autocast(self.precision, self.device):
            return method(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]


@dataclass
class UpdateResult:
    """What one gradient step reports: its losses (averaged into the episode's metrics row) and,
    for a prioritized replay, each sample's new priority before the exponent."""

    metrics: dict[str, float] = field(default_factory=dict)
    priorities: np.ndarray | None = None


class Agent(nn.Module):
    """Base of every agent; subclasses implement the methods that raise NotImplementedError.

    ``encoder`` is the online encoder whose layers LeVER freezes and whose outputs the replay
    stores; ``target_encoder`` its target copy.
    """

    name: ClassVar[str]  # its key in ``registry.AGENTS``
    device: torch.device
    generator: torch.Generator
    encoder: LayeredEncoder
    target_encoder: LayeredEncoder
    cfg: Any

    @classmethod
    def entry(cls) -> AgentEntry:
        return AGENTS[cls.name]

    @property
    def settings(self) -> Any:
        """This algorithm's own settings (its recipe section)."""
        return self.cfg.agent

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    @functools.cached_property
    def precision(self) -> str:
        """``fp32`` or ``bf16``: the config's ``precision`` resolved for this agent's device once
        (a Trainer records the resolved name in the run's config)."""
        return resolve_precision(getattr(self.cfg, "precision", "auto"), self.device).name

    def freeze(self, n: Any) -> int:
        """Freeze encoder layers 1..n (``"all"``: every layer); returns n."""
        raise NotImplementedError

    def act(self, obs: np.ndarray, sample: bool) -> Any:
        """The action for one uint8 observation: explore (``sample``) or evaluate."""
        raise NotImplementedError

    def update(self, batch: Any, step: int) -> UpdateResult:
        """One gradient step on a ``PixelBatch`` (before Tf) or a ``LatentBatch`` (after)."""
        raise NotImplementedError

    def latent_spec(self, n: int) -> tuple[int, tuple[int, ...]]:
        """(N networks, feature shape) of the latent the replay stores for layer n."""
        raise NotImplementedError

    def encode_latents(self, stacks: np.ndarray, augmentations: int) -> np.ndarray:
        """[n, K, N, *feature] latents of uint8 stacks, K augmented copies each."""
        raise NotImplementedError

    def layer_flops(self) -> list[LayerFlops]:
        """Forward FLOPs per sample of every layer, named as the paper's tables 2 and 3."""
        raise NotImplementedError

    @property
    def update_period(self) -> int:
        """Updates in one cycle of differently costed updates (SAC: the actor's period)."""
        return 1

    def update_variant(self, step: int) -> str:
        """A name for the kind of update ``step`` makes; equal names cost equal FLOPs."""
        return str(step % self.update_period == 0)

    def replay_sampler(self, first_update: int, last_step: int) -> Sampler:
        """How the replay draws this agent's batches: uniformly, unless the agent says."""
        return UniformSampler()

    @property
    def n_step(self) -> int:
        """Length of the multi-step returns the replay sums for this agent."""
        return int(getattr(self.settings, "multi_step", 1))

    # ------------------------------------------------------------------ zoo packages
    @classmethod
    def package_tensors(cls, weights: Mapping[str, torch.Tensor], num_layers: int,
                        with_heads: bool) -> dict[str, torch.Tensor]:
        """A package's tensors (``encoder.``, optional ``actor_fc.``, ``heads.``) from this
        agent's state dict; targets, auxiliary losses and optimizers are left out."""
        raise NotImplementedError

    @classmethod
    def heads_config(cls, cfg: Any, action_size: int) -> dict[str, Any]:
        """The ``heads`` entry of a package's config.json: kind, action size, widths."""
        raise NotImplementedError

    @classmethod
    def build_heads(cls, spec: Mapping[str, Any], feature_dim: int) -> nn.Module:
        """Untrained heads as a package's ``heads.`` part holds them, sized by ``spec`` (the
        ``heads`` entry of its config.json): what a package header is checked against."""
        raise NotImplementedError

    @classmethod
    def action_size_of(cls, weights: Mapping[str, torch.Tensor], cfg: Any) -> int:
        """The action size the heads in ``weights`` (this agent's state dict) were built for."""
        raise NotImplementedError

    def load_package(self, package: Any, full: bool) -> None:
        """Load an ``EncoderPackage`` (checked to fit) into online and target networks; the
        heads too when ``full`` (task transfer)."""
        raise NotImplementedError

    @property
    def num_layers(self) -> int:
        return self.encoder.num_layers

    @property
    def frozen_layers(self) -> int:
        return self.encoder.frozen_layers

    @property
    def fully_frozen(self) -> bool:
        return self.frozen_layers == self.num_layers

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device)

    def _freeze_layers(self, n: Any, *sharing: LayeredEncoder) -> int:
        """Freeze layers 1..n of the online encoder (and of ``sharing``, encoders built on the same
        layers); the target encoder's copies are overwritten with them and frozen, so the two stay
        equal; frozen parameters leave the optimizers. Returns n."""
        n = self.encoder.freeze(n)
        for encoder in sharing:
            encoder.freeze(n)
        for online, target in zip(self.encoder.layers[:n], self.target_encoder.layers[:n]):
            target.load_state_dict(online.state_dict())
        self.target_encoder.freeze(n)
        self._drop_frozen_parameters()
        return n

    def _drop_frozen_parameters(self) -> None:
        """Remove parameters that no longer train from every optimizer, with their state and
        gradients."""
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                dropped = [p for p in group["params"] if not p.requires_grad]
                group["params"] = [p for p in group["params"] if p.requires_grad]
                for p in dropped:
                    opt.state.pop(p, None)
                    p.grad = None  # a stale gradient from before Tf is memory, nothing else

    def export_state(self) -> dict[str, Any]:
        """Weights, optimizer states and the generator, as tensors and plain values."""
        return {
            "modules": {k: v.detach().clone() for k, v in self.state_dict().items()},
            "optimizers": {name: copy.deepcopy(opt.state_dict())  # a snapshot, not live tensors
                           for name, opt in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "frozen_layers": self.frozen_layers,
        }

    def import_state(self, state: dict[str, Any]) -> None:
        if state["frozen_layers"]:
            self.freeze(int(state["frozen_layers"]))
        self.load_state_dict(state["modules"], strict=True)
        for name, opt in self.optimizers.items():
            # the moments come from the checkpoint, the hyperparameters from this run's config
            # (torch would restore the saved ones, so `resume --set critic_lr=...` would not act)
            configured = [{k: g[k] for k in _HYPERPARAMETERS if k in g} for g in opt.param_groups]
            opt.load_state_dict(state["optimizers"][name])
            for group, values in zip(opt.param_groups, configured):
                group.update(values)
        self.generator.set_state(state["generator"])
