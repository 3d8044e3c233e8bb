"""Zoo encoders for other projects: ``load_encoder("hub:walker_stand-60k")``.

A ``ZooEncoder`` is a plain ``torch.nn.Module`` that takes uint8 observations exactly as the
source task renders them (``[B, frames * channels, H, W]``, frames oldest first) and returns the
latent. Its preprocessing comes from the package's config, never from a guess: a render-size
input is centre-cropped to the crop size (as the agent acts and evaluates), a crop-size input is
used as it is (e.g. after your own random crop), and pixels are scaled ``x / 255`` inside.

Loaded encoders come back frozen and in eval mode, as R3M and VC-1 hand theirs out (and as
``lever-transfer finetune`` freezes by default): ``freeze_layers=0`` and ``.train()`` for
fine-tuning. It follows huggingface_hub's conventions through ``ModelHubMixin``:
``save_pretrained`` (writes its three files, touches nothing else), ``push_to_hub`` and
``from_pretrained`` (``revision``, ``cache_dir``, ``force_download``, ``local_files_only``,
``token`` and ``map_location``/``device`` as huggingface_hub's own; also ``hub:``/``hf://``/
``hf-hub:`` references and folders; strict loading with sha256 checks). Where it went is logged
on the ``lever_transfer`` logger at INFO.

This module imports neither dm_control nor gymnasium: ``pip install lever-transfer`` is enough.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import ModelHubMixin
from torch import nn

from ..augment import center_crop
from ..encoders import FreezeSpec, LayeredEncoder
from ..errors import LeverError
from .card import model_card
from .config import PackageConfig
from .hub import DownloadOptions, resolve, split_revision
from .package import WRITTEN_KEYS, EncoderPackage, write_package_files


class ZooEncoder(nn.Module, ModelHubMixin, library_name="lever-transfer",
                 tags=["reinforcement-learning", "pixel-rl", "lever", "encoder"]):
    """A frozen-able zoo encoder with its observation spec, ``preprocess`` and metadata attached."""

    def __init__(self, encoder: LayeredEncoder, config: PackageConfig, name: str = "encoder",
                 freeze_layers: FreezeSpec = "all"):
        super().__init__()
        self.encoder = encoder
        self.config = config
        self.name = name
        self.observation_spec: dict[str, Any] = dict(config.document["observation"])
        self.metadata: dict[str, Any] = dict(config.source)
        self.layer_names = list(encoder.layer_names)
        self.frozen_layers = encoder.freeze(freeze_layers)

    @classmethod
    def from_package(cls, package: EncoderPackage, name: str | None = None,
                     freeze_layers: FreezeSpec = "all") -> ZooEncoder:
        return cls(package.build_encoder(), package.config, name or package.path.name,
                   freeze_layers)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.encoder.output_shape(self.encoder.num_layers))

    def preprocess(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, S*C, H, W]`` (or one ``[S*C, H, W]``) -> the encoder's uint8 input crop."""
        spec = self.observation_spec
        x = torch.as_tensor(obs)
        if x.dim() == 3:
            x = x[None]
        channels = spec["channels"] * spec["frame_stack"]
        sizes = {spec["render_size"], spec["crop_size"]}
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != channels \
                or x.shape[2] != x.shape[3] or x.shape[2] not in sizes:
            raise LeverError(
                f"{self.name} expects uint8 observations [B, {channels}, H, H] with H = "
                f"{spec['render_size']} (rendered; centre-cropped here) or {spec['crop_size']} "
                f"(already cropped): {spec['frame_stack']} stacked {spec['channels']}-channel "
                f"frames; got {x.dtype} {tuple(x.shape)}")
        device = next(self.encoder.parameters()).device
        return center_crop(x, spec["crop_size"]).to(device)

    def forward(self, obs: np.ndarray | torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """The latent after ``layer`` (default: the last layer) of uint8 observations."""
        return self.encoder(self.preprocess(obs), 0, layer)

    # ------------------------------------------------------------------ huggingface_hub
    def save_pretrained(self, save_directory: str | Path, *, config: Any = None,
                        repo_id: str | None = None, push_to_hub: bool = False,
                        model_card_kwargs: dict[str, Any] | None = None,
                        **push_to_hub_kwargs: Any) -> str | None:
        """Write ``model.safetensors``, ``config.json`` and ``README.md`` into ``save_directory``
        (created if needed), each atomically; other files there are left alone. The config and
        card describe this encoder, so ``config`` and ``model_card_kwargs`` are refused."""
        if config is not None or model_card_kwargs:
            raise LeverError("a ZooEncoder writes its own config.json and model card; drop config= "
                             "and model_card_kwargs=")
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_pretrained(folder)
        if push_to_hub:
            return self.push_to_hub(repo_id=repo_id or folder.resolve().name,
                                    **push_to_hub_kwargs)
        return None

    def _save_pretrained(self, save_directory: Path) -> None:
        config = {k: v for k, v in self.config.to_json().items()
                  if k not in (*WRITTEN_KEYS, "heads")}
        tensors = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        write_package_files(Path(save_directory), tensors, config,
                            lambda c: model_card(self.name, c))

    @classmethod  # no **kwargs, unlike the mixin: a keyword it does not know is an error
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *,  # type: ignore[override]
                        revision: str | None = None, cache_dir: str | Path | None = None,
                        force_download: bool = False, local_files_only: bool = False,
                        token: str | bool | None = None,
                        map_location: str | torch.device = "cpu",
                        device: str | torch.device | None = None,
                        freeze_layers: FreezeSpec = "all") -> ZooEncoder:
        """Load from ``hub:NAME``, ``hf://ORG/REPO``, ``hf-hub:ORG/REPO``, ORG/REPO or a folder.

        The keywords are huggingface_hub's (``revision`` pins a branch, tag or commit, or for
        ``hub:NAME`` a sha256 prefix); ``device`` is ``map_location``'s other name. Any other
        keyword is a ``TypeError``, not silently ignored."""
        ref = str(pretrained_model_name_or_path)
        if not ref.startswith(("hub:", "hf://", "hf-hub:")) and not Path(ref).is_dir() \
                and ref.count("/") == 1:
            ref = f"hf://{ref}"
        if device is not None and map_location != "cpu" and str(device) != str(map_location):
            raise LeverError(f"map_location={map_location!r} and device={device!r} disagree; "
                             f"give one of them")
        return load_encoder(ref, freeze_layers, device if device is not None else map_location,
                            revision=revision, cache_dir=cache_dir, force_download=force_download,
                            local_files_only=local_files_only, token=token)


def with_revision(reference: str, revision: str | None) -> str:
    """``reference`` pinned to ``revision`` (``@REV``); a folder cannot be pinned, and a
    reference already pinned elsewhere is refused rather than silently re-pinned."""
    if revision is None:
        return reference
    if not reference.startswith(("hub:", "hf://", "hf-hub:")):
        raise LeverError(f"revision={revision!r} needs a hub:NAME or Hugging Face reference, not "
                         f"the folder {reference!r}")
    pinned = split_revision(reference)[1]
    if pinned is not None and pinned != revision:
        raise LeverError(f"{reference!r} is pinned to {pinned!r} but revision={revision!r}; give "
                         f"one of them")
    return reference if pinned else f"{reference}@{revision}"


def load_encoder(reference: str, freeze_layers: FreezeSpec = "all",
                 device: str | torch.device = "cpu", *, revision: str | None = None,
                 cache_dir: str | Path | None = None, force_download: bool = False,
                 local_files_only: bool = False, token: str | bool | None = None) -> ZooEncoder:
    """A zoo encoder as a ``torch.nn.Module`` in eval mode, layers ``1..freeze_layers`` frozen
    (default: all of them; ``freeze_layers=0`` and ``.train()`` to fine-tune it all).

    ``reference``: ``hub:NAME[@REV]``, ``hf://ORG/REPO[@REV]``, ``hf-hub:ORG/REPO[@REV]`` or a
    package folder; ``revision`` is the same as ``@REV``; ``cache_dir``, ``force_download``,
    ``local_files_only`` and ``token`` are huggingface_hub's, for what comes from the Hub.
    Weights are checked against their sha256 and loaded strictly.
    """
    options = DownloadOptions(cache_dir, force_download, local_files_only, token)
    resolved = resolve(with_revision(str(reference), revision), options=options)
    encoder = ZooEncoder.from_package(resolved.package, resolved.name, freeze_layers)
    return encoder.to(device).eval()


def list_encoders(pattern: str | None = None) -> list[dict[str, Any]]:
    """The encoders the local hub and the shipped zoo hold, as timm's ``list_models``: one dict
    per name (``name``, ``where`` and the index entry: source task, env steps, evaluation
    return, latent size, sha256...), sorted by name; ``pattern`` is a shell wildcard
    (``"walker_*"``)."""
    from .publishing import entries

    found = [{"name": name, "where": where, **entry} for name, where, entry in entries()
             if pattern is None or fnmatch.fnmatchcase(name, pattern)]
    return sorted(found, key=lambda entry: entry["name"])
