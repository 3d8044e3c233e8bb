"""Zoo encoders for other projects: ``load_encoder("hub:walker_stand-20k", freeze_layers=4)``.

A ``ZooEncoder`` is a plain ``torch.nn.Module`` that takes uint8 observations exactly as the
source task renders them (``[B, frames * channels, H, W]``, frames oldest first) and returns the
latent. Its preprocessing comes from the package's config, never from a guess: a render-size
input is centre-cropped to the crop size (as the agent acts and evaluates), a crop-size input is
used as it is (e.g. after your own random crop), and pixels are scaled ``x / 255`` inside.

It follows huggingface_hub's conventions through ``ModelHubMixin``: ``save_pretrained``,
``push_to_hub`` and ``from_pretrained`` (which also accepts ``hub:``/``hf://``/``hf-hub:``
references and folders, and loads strictly with sha256 checks).

This module imports neither dm_control nor gymnasium.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import ModelHubMixin
from torch import nn

from .augment import center_crop
from .card import model_card
from .encoders import FreezeSpec, LayeredEncoder
from .errors import LeverError
from .hub import Say, resolve, stderr
from .package import EncoderPackage, write_package

_META_KEYS = ("format", "parts", "package_version", "num_parameters", "sha256")


class ZooEncoder(nn.Module, ModelHubMixin, library_name="lever-transfer",
                 tags=["reinforcement-learning", "pixel-rl", "lever", "encoder"]):
    """A frozen-able zoo encoder with its observation spec, ``preprocess`` and metadata attached."""

    def __init__(self, encoder: LayeredEncoder, config: dict[str, Any], name: str = "encoder",
                 freeze_layers: FreezeSpec = 0):
        super().__init__()
        self.encoder = encoder
        self.config = config
        self.name = name
        self.observation_spec: dict[str, Any] = dict(config["observation"])
        self.metadata: dict[str, Any] = dict(config.get("source", {}))
        self.layer_names = list(encoder.layer_names)
        self.frozen_layers = encoder.freeze(freeze_layers)

    @classmethod
    def from_package(cls, package: EncoderPackage, name: str | None = None,
                     freeze_layers: FreezeSpec = 0) -> ZooEncoder:
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
    def _save_pretrained(self, save_directory: Path) -> None:
        config = {k: v for k, v in self.config.items() if k not in (*_META_KEYS, "heads")}
        tensors = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        write_package(Path(save_directory), tensors, config, lambda c: model_card(self.name, c))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *,
                        freeze_layers: FreezeSpec = 0, say: Say = stderr,
                        **_: Any) -> ZooEncoder:
        """Load from ``hub:NAME``, ``hf://ORG/REPO``, ``hf-hub:ORG/REPO``, a folder, or ORG/REPO."""
        ref = str(pretrained_model_name_or_path)
        if not ref.startswith(("hub:", "hf://", "hf-hub:")) and not Path(ref).is_dir() \
                and ref.count("/") == 1:
            ref = f"hf://{ref}"
        return load_encoder(ref, freeze_layers=freeze_layers, say=say)


def load_encoder(reference: str, freeze_layers: FreezeSpec = 0, device: str | torch.device = "cpu",
                 say: Say = stderr) -> ZooEncoder:
    """A zoo encoder as a ``torch.nn.Module``, layers ``1..freeze_layers`` frozen.

    ``reference``: ``hub:NAME[@REV]``, ``hf://ORG/REPO[@REV]``, ``hf-hub:ORG/REPO[@REV]`` or a
    package folder. Weights are checked against their sha256 and loaded strictly.
    """
    resolved = resolve(reference, say)
    return ZooEncoder.from_package(resolved.package, resolved.name, freeze_layers).to(device)
