"""Checkpoints as safetensors + JSON, written atomically; never pickles.

A checkpoint is a nested structure of dicts, lists, plain values, torch tensors and numpy arrays
(agent weights, optimizer states, replay arrays, RNG states, counters). ``flatten`` moves every
array into one flat ``{key: tensor}`` map for safetensors and leaves a JSON skeleton that says
where each array goes back; ``unflatten`` reverses it.

Atomicity: a checkpoint is written into a temporary directory, fsynced, renamed to
``ckpt-<agent_step>``, and only then does the ``LATEST`` file (itself replaced atomically) point at
it. A crash at any moment leaves either the old or the new checkpoint complete and referenced;
a half-written directory is never picked up and is cleaned on the next save.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import LeverError
from .files import fsync_dir, write_atomic

LATEST = "LATEST"
TENSORS = "state.safetensors"
SKELETON = "state.json"
PREFIX = "ckpt-"  # a checkpoint folder is ckpt-<agent_step, 10 digits>


def flatten(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """JSON skeleton of ``obj``; arrays are moved into ``tensors`` under their path."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        if any(stride % array.itemsize for stride in array.strides):
            array = array.copy()  # a one-item view of a packed record field counts as contiguous
        tensors[prefix] = torch.from_numpy(array)
        return {"__ndarray__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, flatten(v, tensors, f"{prefix}.{k}" if prefix else str(k))]
                             for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {prefix!r}")


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__ndarray__" in skeleton:
            return tensors[skeleton["__ndarray__"]].numpy()
        return {k: unflatten(v, tensors) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [unflatten(v, tensors) for v in skeleton]
    return skeleton


def save_checkpoint(directory: Path, step: int, state: dict[str, Any], keep: int = 1) -> Path:
    """Write ``state`` as checkpoint ``step`` under ``directory`` and point LATEST at it."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten(state, tensors)
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f".{PREFIX}", suffix=".tmp"))
    final = directory / f"{PREFIX}{step:010d}"
    try:
        save_file(tensors, str(tmp / TENSORS))
        write_atomic(tmp / SKELETON, json.dumps({"step": step, "state": skeleton}).encode())
        fsync_dir(tmp)
        if final.exists():
            _discard(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_atomic(directory / LATEST, final.name.encode())
    _prune(directory, keep, final.name)
    return final


def _prune(directory: Path, keep: int, newest: str) -> None:
    """Remove old checkpoints and leftovers of interrupted saves."""
    for leftover in directory.glob(f".{PREFIX}*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    done = [p.name for p in list_checkpoints(directory)]
    for name in done[: max(0, len(done) - keep)]:
        if name != newest:
            _discard(directory / name)


def _discard(checkpoint: Path) -> None:
    """Delete a checkpoint folder without it ever being seen half deleted: it is moved out of
    sight first (a kill while deleting leaves a leftover that the next save cleans)."""
    hidden = Path(tempfile.mkdtemp(dir=checkpoint.parent, prefix=f".{PREFIX}", suffix=".tmp"))
    os.replace(checkpoint, hidden / checkpoint.name)
    shutil.rmtree(hidden, ignore_errors=True)


def list_checkpoints(directory: Path) -> list[Path]:
    """Every complete checkpoint under ``directory``, oldest first (names sort by step)."""
    return sorted(p for p in Path(directory).glob(f"{PREFIX}*") if p.is_dir())


def checkpoint_step(path: Path) -> int:
    """The agent step a checkpoint folder was saved at, from its name."""
    return int(Path(path).name.removeprefix(PREFIX))


def latest_checkpoint(directory: Path) -> Path | None:
    pointer = directory / LATEST
    if not pointer.exists():
        return None
    path = directory / pointer.read_text().strip()
    return path if path.is_dir() else None


def _tensor_keys(skeleton: Any) -> list[str]:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton or "__ndarray__" in skeleton:
            return [cast(str, skeleton.get("__tensor__", skeleton.get("__ndarray__")))]
        return [k for _, v in skeleton["__dict__"] for k in _tensor_keys(v)]
    if isinstance(skeleton, list):
        return [k for v in skeleton for k in _tensor_keys(v)]
    return []


def load_checkpoint(path: Path, part: str | None = None) -> tuple[int, Any]:
    """(step, state) of a checkpoint directory, or only ``state[part]`` (only its tensors are
    read: the agent of a run without its replay); one-line error if it is damaged."""
    try:
        meta = json.loads((path / SKELETON).read_text())
        if part is None:
            return int(meta["step"]), unflatten(meta["state"], load_file(str(path / TENSORS)))
        skeleton = dict(meta["state"]["__dict__"])[part]
        with safe_open(str(path / TENSORS), framework="pt") as f:
            tensors = {key: f.get_tensor(key) for key in _tensor_keys(skeleton)}
        return int(meta["step"]), unflatten(skeleton, tensors)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise LeverError(f"checkpoint {path} is damaged ({exc.__class__.__name__}: {exc}); "
                         f"delete it to resume from an older one, or start a new run") from None
