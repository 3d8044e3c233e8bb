"""FLOPs accounting as in the paper's appendix B.

The paper counts a forward FLOP as one multiply-add per weight use, a backward pass as twice the
forward, and takes per-layer counts from Huang et al.'s (CondenseNet) ``measure_model``: a conv
layer costs ``k_h * k_w * c_in / groups * c_out * h_out * w_out`` (bias not counted), a linear layer
``(in + 1) * out`` (bias counted). With those rules the SAC-AE/CURL encoder on 84x84x9 gives
exactly table 2 (conv1 4.36e6 ... fc 1.96e6) and the data-efficient Rainbow encoder table 3.

Counts come from the real modules and input shapes through forward hooks, never from a table:
``layer_table`` runs one dummy sample through a model, and ``FlopCounter`` counts a real update
(forward per sample times batch, plus backward = 2x forward for every layer call whose output
takes part in a backward pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

COUNTED = (nn.Conv2d, nn.Linear)
T = TypeVar("T")


def module_flops(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """Forward multiply-adds of one call of a conv or linear layer, for the whole batch."""
    if isinstance(module, nn.Conv2d):
        batch, _, h_out, w_out = output.shape
        k_h, k_w = module.kernel_size
        per_position = k_h * k_w * module.in_channels // module.groups * module.out_channels
        return batch * per_position * h_out * w_out
    if isinstance(module, nn.Linear):
        rows = output.numel() // module.out_features
        weight = module.in_features * module.out_features
        return rows * (weight + (module.out_features if module.bias is not None else 0))
    extra = getattr(module, "flops", None)  # layers such as NoisyLinear say their own cost
    return int(extra(inputs, output)) if callable(extra) else 0


def _is_counted(module: nn.Module) -> bool:
    return isinstance(module, COUNTED) or callable(getattr(module, "flops", None))


@dataclass(frozen=True)
class LayerFlops:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    flops: int


def layer_table(model: nn.Module, *example: torch.Tensor, prefix: str = "") -> list[LayerFlops]:
    """Per-layer forward FLOPs of ``model(*example)`` for ONE sample (batch 1), in call order."""
    names = {m: n for n, m in model.named_modules()}
    rows: list[LayerFlops] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if _is_counted(module) and module in names:
            rows.append(LayerFlops(prefix + names[module], type(module).__name__,
                                   tuple(output.shape[1:]), module_flops(module, inputs, output)))

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        with torch.no_grad():
            model(*example)
    finally:
        handle.remove()
    return rows


class FlopCounter:
    """Counts the FLOPs of everything that runs inside ``with counter:`` (all modules)."""

    def __init__(self) -> None:
        self.forward = 0
        self.backward = 0
        self.calls: dict[str, int] = {}
        self._handle: RemovableHandle | None = None

    @property
    def total(self) -> int:
        return self.forward + self.backward

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not _is_counted(module) or not isinstance(output, torch.Tensor):
            return
        flops = module_flops(module, inputs, output)
        self.forward += flops
        if output.requires_grad:
            self.backward += 2 * flops  # appendix B: backward = 2x forward
        key = type(module).__name__
        self.calls[key] = self.calls.get(key, 0) + 1

    def __enter__(self) -> "FlopCounter":
        self._handle = nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (forward + backward) of one call of ``fn``."""
    with FlopCounter() as counter:
        fn()
    return counter.total


class CachedFlops:
    """Counts an update's FLOPs once per update kind, then reuses the count.

    An update's cost depends only on its kind (before/after freezing, with or without the actor
    step), so hooks run on the first update of each kind and never again on the hot path.
    """

    def __init__(self) -> None:
        self.by_kind: dict[str, int] = {}

    def run(self, kind: str, fn: Callable[[], T]) -> tuple[T, int]:
        """(what ``fn`` returns, the FLOPs of its kind)."""
        if kind in self.by_kind:
            return fn(), self.by_kind[kind]
        with FlopCounter() as counter:
            result = fn()
        self.by_kind[kind] = counter.total
        return result, counter.total


def format_table(rows: list[LayerFlops]) -> Iterator[str]:
    width = max(len(r.name) for r in rows)
    yield f"{'layer':<{width}}  {'output':>14}  {'FLOPs':>9}"
    for r in rows:
        shape = "x".join(str(d) for d in r.output_shape)
        yield f"{r.name:<{width}}  {shape:>14}  {r.flops:>9.2e}"
