"""Mixed precision: bf16 autocast where the hardware multiplies bf16 natively, float32 elsewhere.

Only the convolutions and matrix products below the latent run in bf16 (autocast casts copies of
the weights); parameters, Adam moments, target networks and their soft updates stay float32,
because naive low-precision SAC fails, partly through target-network averaging (Björck et al.
2021, "Low-Precision Reinforcement Learning"). The encoder's fc + LayerNorm run in float32
(``encoders._Head``): with a bf16 latent walker_stand learned worse (docs/results.md (f)). The
heads' output layers run in float32 too (``Float32Output``: Q values, the actor's mean and
log-std, Rainbow's atom logits), and CURL's bilinear logits run with autocast off, so losses,
log-probabilities and the entropy term are float32. Latent replay stores float32 (or float16)
latents as before.

``auto`` picks bf16 on a CPU with AMX-BF16 or AVX512-BF16 (a SAC+CURL update 1.64x cheaper on an
AVX512-BF16 EPYC, measured in ``benchmarks/update_speed.py``) and on a CUDA GPU with bf16,
float32 elsewhere: on a CPU without native bf16 arithmetic, bf16 is emulated and slower.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Iterable

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_FLAGS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"))


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(device: torch.device, flags: Iterable[str] | None = None) -> str | None:
    """What makes bf16 fast on ``device`` (``AMX-BF16``, ``CUDA bf16``...), or None.
    ``flags``: the CPU's feature flags (default: this machine's), injectable for tests."""
    if device.type == "cuda":
        return "CUDA bf16" if torch.cuda.is_bf16_supported() else None
    have = cpu_flags() if flags is None else frozenset(flags)
    return next((label for flag, label in NATIVE_BF16_FLAGS if flag in have), None)


@dataclass(frozen=True)
class Precision:
    """A run's resolved precision (``fp32`` or ``bf16``) and why it was chosen."""

    name: str
    reason: str

    def describe(self) -> str:
        return f"{self.name} ({self.reason})"


def resolve_precision(setting: str, device: torch.device | str,
                      flags: Iterable[str] | None = None) -> Precision:
    """``auto`` -> bf16 where ``native_bf16`` finds support, else fp32; fp32 and bf16 as asked."""
    device = torch.device(device)
    if setting not in PRECISIONS:
        raise ValueError(f"precision {setting!r}: use one of {', '.join(PRECISIONS)}")
    if setting == "fp32":
        return Precision("fp32", "asked for")
    native = native_bf16(device, flags)
    if setting == "bf16":
        return Precision("bf16", f"asked for; {native}" if native else
                         "asked for; no native bf16 here: slower than fp32")
    if native:
        return Precision("bf16", f"auto: {native}")
    return Precision("fp32", "auto: no AMX-BF16 or AVX512-BF16 on this CPU"
                     if device.type == "cpu" else f"auto: no bf16 on {device}")


def autocast(precision: str, device: torch.device) -> ContextManager[object]:
    """bf16 autocast on ``device`` for ``precision == "bf16"``; nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def full_precision(device: torch.device) -> ContextManager[object]:
    """Autocast off: what runs inside (CURL's bilinear logits) is float32 in a bf16 update."""
    return torch.autocast(device.type, enabled=False)


class Float32Output(nn.Sequential):
    """A stack of layers whose last one runs in float32 even under bf16 autocast.

    bf16 keeps 8 significant bits: a Q value near 50 moves in steps of 0.25, about a reward, so a
    bf16 output layer would quantise the TD error it is trained on (and Rainbow's atom logits, the
    actor's log-std). The output layer is a small share of a head's FLOPs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, output = self
        for layer in hidden:
            x = layer(x)
        with full_precision(x.device):
            return output(x.float())
