"""Frozen encoder packages: ``model.safetensors`` (weights only) + ``config.json``.

The folder is what any Hugging Face model repo can hold, so a run's frozen encoder can be
published to the zoo as it is. The config says everything a loader needs and must never guess:
the architecture and its layers, the latent shape after each layer, and the observation spec
(channels, frame stack, render size, crop, pixel scaling). ``sha256`` of the weights lets every
load check that the file is the one the config describes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from . import __version__
from .checkpoint import _fsync_dir, write_atomic
from .encoders import LayeredEncoder

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encoder_spec(encoder: LayeredEncoder, architecture: str, frame_stack: int, render_size: int,
                 crop_size: int) -> dict[str, Any]:
    """The architecture and observation part of an encoder's config."""
    return {
        "architecture": architecture,
        "layers": [{"index": i + 1, "name": name, "output_shape": list(shape)}
                   for i, (name, shape) in enumerate(zip(encoder.layer_names, encoder.output_shapes()))],
        "feature_dim": encoder.feature_dim,
        "observation": {
            "channels": encoder.obs_shape[0] // frame_stack, "frame_stack": frame_stack,
            "render_size": render_size, "crop_size": crop_size, "dtype": "uint8",
            "layout": "CHW, frames oldest first", "pixel_scaling": "x / 255",
            "crop": "random for training, centre for acting and evaluation",
        },
    }


def save_encoder_package(directory: Path, tensors: dict[str, torch.Tensor],
                         config: dict[str, Any]) -> Path:
    """Write weights and config into ``directory`` atomically (temporary folder, then rename)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  str(tmp / WEIGHTS), metadata={"format": "pt"})
        config = {**config, "package_version": __version__, "sha256": sha256_file(tmp / WEIGHTS)}
        write_atomic(tmp / CONFIG, json.dumps(config, indent=2, sort_keys=True).encode())
        _fsync_dir(tmp)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory
