"""What every agent shares with the training loop: freezing bookkeeping and checkpoint state.

An agent owns its networks, optimizers and a torch generator (crops, noise, exploration), and
exposes ``act``, ``update``, ``freeze``, ``latent_spec`` and ``encode_latents``; the loop owns
everything else. Keeping the checkpoint format here means a resumed run restores any agent the
same way: weights, optimizer states, generator state, frozen layer count.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from ..encoders import LayeredEncoder


class Agent(nn.Module):
    """Base of the SAC+CURL and Rainbow agents.

    Subclasses provide ``encoder`` (the online encoder whose layers LeVER freezes and whose
    outputs the replay stores), ``target_encoder``, ``optimizers``, ``freeze``, ``device`` and
    ``generator``.
    """

    device: torch.device
    generator: torch.Generator
    encoder: LayeredEncoder
    target_encoder: LayeredEncoder

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def freeze(self, n: Any) -> int:
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
            opt.load_state_dict(state["optimizers"][name])
        self.generator.set_state(state["generator"])
