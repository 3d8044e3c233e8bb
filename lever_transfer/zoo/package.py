"""Encoder packages: the folder a zoo encoder lives in, and the only way one is read.

A package is what any Hugging Face model repo can hold:

- ``model.safetensors``: weights only, under these prefixes: ``encoder.`` (the critic's
  encoder, layers 1..E), for SAC+CURL ``actor_fc.`` (the actor's own fc + LayerNorm; its convs
  are the encoder's), and optionally ``heads.`` (for task transfer: SAC's ``heads.actor.`` /
  ``heads.critic.`` / ``heads.log_alpha``, or Rainbow's dueling C51 head; ``heads.kind`` in
  the config says which);
- ``config.json``: everything a loader needs and must never guess: the architecture and its
  arguments, the latent shape after each layer, the observation spec (channels, frame stack,
  render size, crop, pixel scaling), where it came from (task, steps, seed, recipe, FLOPs,
  evaluation return), the sha256 of the weights and ``stored_dtype``, the dtype their
  floating-point tensors are stored in (``float32``, or ``float16`` to halve the file; absent
  in packages written before it existed, which are float32);
- ``README.md``: the model card (see ``card.py``).

Reading is strict: the sha256 must match, the config must describe exactly the tensors in the
file (names, shapes, dtypes, and ``num_parameters``, their total size, where declared), and
nothing is ever unpickled. The config is compared with the safetensors header before any module
is built or any tensor read, so a config that declares a huge network costs nothing to refuse.
Every failure is one ``PackageError`` line that says which file is wrong and what to do.
Tensors are always handed out as float32, whatever was stored, so loaders never see float16.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .._version import __version__
from ..encoders import LayeredEncoder, make_encoder
from ..errors import LeverError
from ..files import default_permissions, fsync_dir, live_folder, replace_dir, write_atomic
from ..registry import HEAD_KINDS, heads_agent
from .config import (
    FORMAT,
    PARTS,
    STORED_DTYPES,
    Observation,
    PackageConfig,
    PackageError,
    parse_config,
)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
MAX_WEIGHTS_BYTES = 2 << 30  # no zoo encoder comes near 2 GB; refuse before reading one that does
# the torch dtype of each stored dtype (config.json "stored_dtype"); modules are float32
STORED_TORCH_DTYPES = {name: getattr(torch, name) for name in STORED_DTYPES}
# the config keys write_package fills in itself (a config passed to it may hold stale ones)
WRITTEN_KEYS = ("format", "parts", "package_version", "num_parameters", "sha256", "stored_dtype")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- writing

def encoder_spec(encoder: LayeredEncoder, architecture: str, frame_stack: int, render_size: int,
                 crop_size: int, num_filters: int = 32, action_repeat: int | None = None
                 ) -> dict[str, Any]:
    """The architecture and observation part of an encoder's config. ``action_repeat`` is the
    frame spacing the encoder learned from: its stacked frames were that many env steps apart."""
    atari = architecture == "der"
    return {
        "architecture": architecture,
        "architecture_args": {"obs_shape": list(encoder.obs_shape),
                              "feature_dim": encoder.feature_dim, "num_filters": num_filters,
                              "num_conv_layers": getattr(encoder, "num_conv_layers",
                                                         encoder.num_layers - 1)},
        "layers": [{"index": i + 1, "name": name, "output_shape": list(shape)}
                   for i, (name, shape) in enumerate(zip(encoder.layer_names,
                                                         encoder.output_shapes()))],
        "feature_dim": encoder.feature_dim,
        "observation": {
            "channels": encoder.obs_shape[0] // frame_stack, "frame_stack": frame_stack,
            "render_size": render_size, "crop_size": crop_size, "dtype": "uint8",
            **({"action_repeat": action_repeat} if action_repeat is not None else {}),
            "layout": "CHW, frames oldest first", "pixel_scaling": "x / 255",
            "crop": ("none (Atari: 84x84 grayscale, frame skip 4 with max-pooling)" if atari
                     else "none, the whole render (DrQ shifts it by up to 4 px in training)"
                     if crop_size == render_size
                     else "random for training, centre for acting and evaluation"),
        },
    }


def write_package(directory: Path, tensors: Mapping[str, torch.Tensor], config: dict[str, Any],
                  card: Callable[[PackageConfig], str] | None = None, *,
                  dtype: str = "float32") -> Path:
    """Write weights, config (with their sha256, size and stored dtype) and ``card(final
    config)`` into ``directory``, replacing the package that was there.

    ``dtype="float16"`` stores floating-point tensors as float16 (half the file, for packages
    shipped in a checkout); integer and bool tensors are stored as they are. The sha256 is over
    the stored bytes. Values beyond float16's range are refused rather than stored as inf.
    Everything goes into a temporary sibling folder that is renamed into place, so a reader sees
    the old package or the new one, never a mix; a crash leaves at most a ``.tmp`` folder.
    """
    _stored_dtype(dtype)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    default_permissions(tmp)
    try:
        write_package_files(tmp, tensors, config, card, dtype=dtype)
        fsync_dir(tmp)
        replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def write_package_files(folder: Path, tensors: Mapping[str, torch.Tensor], config: dict[str, Any],
                        card: Callable[[PackageConfig], str] | None = None, *,
                        dtype: str = "float32") -> dict[str, Any]:
    """Write the package's three files into ``folder``, each atomically, and touch nothing else
    there (``save_pretrained`` into a folder the user keeps other files in). The weights go
    first: a reader between two files sees a sha256 mismatch and refuses, never a wrong mix.
    Returns the config as written."""
    stored = _stored_dtype(dtype)
    weights = save({k: _to_stored(k, v, stored) for k, v in tensors.items()},
                   metadata={"format": "pt"})
    parts = sorted({key.split(".", 1)[0] for key in tensors})
    config = {**config, "format": FORMAT, "parts": parts, "package_version": __version__,
              "num_parameters": sum(v.numel() for v in tensors.values()),
              "sha256": hashlib.sha256(weights).hexdigest(), "stored_dtype": dtype}
    folder = Path(folder)
    write_atomic(folder / WEIGHTS, weights)
    write_atomic(folder / CONFIG, json.dumps(config, indent=2, sort_keys=True).encode())
    if card is not None:
        write_atomic(folder / CARD, card(parse_config(config, str(folder / CONFIG))).encode())
    return config


def _stored_dtype(dtype: str) -> torch.dtype:
    if dtype not in STORED_DTYPES:
        raise LeverError(f"packages store weights as {' or '.join(STORED_DTYPES)}, not {dtype!r}")
    return STORED_TORCH_DTYPES[dtype]


def _to_stored(name: str, tensor: torch.Tensor, stored: torch.dtype) -> torch.Tensor:
    """``tensor`` as written: floating point in the stored dtype; a finite value that would
    become inf is refused (the loaded weights would silently differ, not just be rounded)."""
    tensor = tensor.detach().cpu().contiguous()
    if not tensor.is_floating_point() or tensor.dtype == stored:
        return tensor
    out = tensor.to(stored)
    if not torch.equal(out.isfinite(), tensor.isfinite()):
        raise LeverError(f"tensor {name} holds values beyond {stored}'s range "
                         f"(largest {tensor.abs().max().item():.4g}); store it as float32")
    return out


# ---------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class EncoderPackage:
    """A verified package: its folder, its typed config and its tensors (checked against the
    config), floating-point ones in float32 whatever the stored dtype, as the modules hold them."""

    path: Path
    config: PackageConfig
    tensors: dict[str, torch.Tensor]

    @property
    def observation(self) -> Observation:
        return self.config.observation

    @property
    def has_heads(self) -> bool:
        return self.config.has_heads

    def part(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors under ``name.`` with the prefix removed (a state dict)."""
        prefix = name + "."
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    def build_encoder(self, channels_last: bool = False) -> LayeredEncoder:
        """The encoder with this package's weights loaded strictly."""
        encoder = build_encoder(self.config, channels_last)
        encoder.load_state_dict(self.part("encoder"), strict=True)
        return encoder


def build_encoder(config: PackageConfig, channels_last: bool = False) -> LayeredEncoder:
    """An untrained encoder of the architecture a package config describes."""
    return make_encoder(config.architecture, config.obs_shape, config.feature_dim,
                        config.num_filters, config.num_conv_layers, channels_last)


def read_config(directory: Path) -> PackageConfig:
    """config.json of a package, parsed and checked (``config.parse_config``)."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise PackageError(f"{directory} is not an encoder package: {CONFIG} is missing "
                           f"(publish one with 'lever-transfer pretrain', or pull it again)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path} is not valid JSON ({exc}); pull the package again") from None
    return parse_config(document, str(path))


def read_package(directory: Path, expected_sha256: str | tuple[str, ...] | None = None
                 ) -> EncoderPackage:
    """Open and verify a package: sha256 (against config and ``expected_sha256``, one digest or
    any of several), then tensors."""
    directory = live_folder(directory)
    config = read_config(directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise PackageError(f"{directory}: {WEIGHTS} is missing; pull the package again")
    if weights.stat().st_size > MAX_WEIGHTS_BYTES:
        raise PackageError(f"{weights} is {weights.stat().st_size} bytes, more than any encoder "
                           f"package holds; refusing to read it")
    digest = sha256_file(weights)
    if digest != config.sha256:
        raise PackageError(f"{weights} does not match its config (sha256 {digest[:12]}…, config "
                           f"says {config.sha256[:12]}…): the weights were changed or damaged; "
                           f"pull the package again")
    accepted = (expected_sha256,) if isinstance(expected_sha256, str) else expected_sha256
    if accepted is not None and digest not in accepted:
        raise PackageError(f"{weights} has sha256 {digest[:12]}…, but the zoo index says "
                           f"{accepted[0][:12]}…: not the encoder the index names; pull it "
                           f"again or fix the index")
    # judged from the header before any module or tensor exists; safetensors then loads exactly
    # the names, shapes and dtypes its header declares
    _check_tensors(config, _read_header(weights), weights)
    tensors = {k: v.float() if v.is_floating_point() else v  # float16 -> float32, lossless
               for k, v in _load_tensors(weights).items()}
    return EncoderPackage(directory, config, tensors)


def _unreadable(path: Path, exc: Exception) -> PackageError:
    return PackageError(f"{path} is not a readable safetensors file ({exc}); pull the package "
                        f"again")


def _read_header(path: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype | str]]:
    """Name -> (shape, dtype) from the safetensors header alone: no tensor data is read, so a
    package can be judged before anything of its declared size is allocated. safetensors checks
    that the shapes agree with the byte offsets, so the sizes are bounded by the file's size."""
    try:
        with safe_open(str(path), framework="pt") as f:
            slices = {key: f.get_slice(key) for key in f.keys()}
            return {key: (tuple(s.get_shape()), _DTYPES.get(s.get_dtype(), s.get_dtype()))
                    for key, s in slices.items()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _unreadable(path, exc) from None


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
           "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
           "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _unreadable(path, exc) from None


def expected_shapes(config: PackageConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name -> (shape, dtype) of every tensor the config's parts must contain. The modules are
    built on the meta device, which allocates nothing: a config may declare any size."""
    with torch.device("meta"):
        try:
            encoder = build_encoder(config)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise PackageError(f"config.json describes no buildable encoder ({exc}); re-publish "
                               f"it") from None
        heads = head_modules(config) if config.has_heads else None
    out = {f"encoder.{k}": (tuple(v.shape), v.dtype) for k, v in encoder.state_dict().items()}
    if "actor_fc" in config.parts:
        out.update({f"actor_fc.{k}": (tuple(v.shape), v.dtype)
                    for k, v in encoder.layers[-1].state_dict().items()})
    if heads is not None:
        out.update({f"heads.{k}": (tuple(v.shape), v.dtype) for k, v in heads.state_dict().items()})
    return out


def head_modules(config: PackageConfig) -> torch.nn.Module:
    """Untrained heads of the kind and sizes ``config.heads`` gives, built by an agent that
    carries that kind (``registry.HEAD_KINDS``)."""
    spec = config.heads
    if spec is None:
        raise PackageError("config.json lists 'heads' in parts but has no 'heads' sizes; "
                           "re-publish the encoder")
    owner = heads_agent(spec)
    if owner is None:
        raise PackageError(f"config.json heads kind {spec.get('kind')!r} is not one of "
                           f"{', '.join(HEAD_KINDS)}; upgrade lever-transfer or re-publish the "
                           f"encoder")
    try:
        return owner.agent_class().build_heads(dict(spec), config.feature_dim)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise PackageError(f"config.json 'heads' sizes are unusable ({exc.__class__.__name__}: "
                           f"{exc}); re-publish the encoder") from None


def _count(shapes: Mapping[str, tuple[tuple[int, ...], Any]]) -> int:
    """Number of values in tensors of these shapes (what ``num_parameters`` declares)."""
    return sum(math.prod(shape) for shape, _ in shapes.values())


def _check_tensors(config: PackageConfig,
                   found: Mapping[str, tuple[tuple[int, ...], torch.dtype | str]],
                   path: Path) -> None:
    """Refuse, in one line, tensors (from the header or loaded) that are not exactly the ones the
    config's architecture has: names, shapes, dtypes (floating point ones in the config's
    ``stored_dtype``) and, if declared, the total count."""
    unknown = set(config.parts) - set(PARTS)
    if unknown or "encoder" not in config.parts:
        raise PackageError(f"{path}: config parts {list(config.parts)} must include 'encoder' and "
                           f"only {', '.join(PARTS)}")
    stored = config.stored_dtype
    expected = {name: (shape, STORED_TORCH_DTYPES[stored] if dtype.is_floating_point else dtype)
                for name, (shape, dtype) in expected_shapes(config).items()}
    extra, missing = sorted(set(found) - set(expected)), sorted(set(expected) - set(found))
    if extra or missing:
        differences = [f"extra tensors {extra[:3]}" if extra else "",
                       f"missing tensors {missing[:3]}" if missing else ""]
        raise PackageError(f"{path} does not match its config (a {config.architecture!r} "
                           f"encoder): {'; '.join(d for d in differences if d)}; "
                           f"re-publish the encoder")
    for name, (shape, dtype) in expected.items():
        if found[name] != (shape, dtype):
            raise PackageError(f"{path}: tensor {name} is {found[name][0]} {found[name][1]}, the "
                               f"config's architecture needs {shape} {dtype} (stored_dtype "
                               f"{stored}; {_count(expected):,} values in all, the file holds "
                               f"{_count(found):,}); re-publish it")
    declared = config.num_parameters if config.num_parameters is not None else _count(expected)
    if declared != _count(found):
        raise PackageError(f"{path}: config.json declares num_parameters {declared!r}, the file "
                           f"holds {_count(found):,} values; re-publish the encoder")
