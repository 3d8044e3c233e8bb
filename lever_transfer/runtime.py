"""Process-level settings that make CPU training faster, applied once by the trainer, the CPU
time a run has used, and the device it runs on.

glibc returns every large tensor's memory to the OS on free and page-faults it back in on the
next allocation (mmap above 32 MB, trimming above 128 KB): in an update that allocates the same
large feature maps again and again, that zeroing and faulting costs as much as the convolutions'
elementwise work. Raising the thresholds keeps freed memory in the heap for reuse. Measured in
``benchmarks/update_speed.py`` (see benchmarks/README.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
_applied = False


def keep_freed_memory() -> bool:
    """Tune glibc malloc to reuse freed large blocks; a no-op where glibc is absent."""
    global _applied
    if _applied or not sys.platform.startswith("linux"):
        return _applied
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = all(libc.mallopt(param, value) == 1 for param, value in (
            (M_MMAP_THRESHOLD, 1 << 30),  # the largest value glibc accepts (HEAP_MAX/2 on 64 bit)
            (M_TRIM_THRESHOLD, 1 << 34), (M_TOP_PAD, 1 << 28)))
    except (OSError, AttributeError):
        return False
    _applied = ok
    return ok


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its children, live or ended: a run's
    environment worker renders in its own process, and on a shared machine CPU time is the
    figure that wall time is not."""
    import psutil

    process = psutil.Process()
    own = process.cpu_times()
    total = own.user + own.system + own.children_user + own.children_system
    for child in process.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended between the listing and the reading
            continue
        total += times.user + times.system
    return total


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu`` or ``cuda`` as a torch device; ``cuda`` without a GPU is refused."""
    import torch

    from .errors import LeverError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LeverError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    return torch.device(name)
