"""Zoo encoders in Stable-Baselines3: a features extractor for any image policy.

SB3 injects feature extractors by class, so a frozen zoo encoder plugs into PPO, SAC, TD3 or
DQN's ``CnnPolicy`` without touching the algorithm. The environment must show the encoder what
its source task rendered: ``frame_stack`` square frames of the render (or crop) size::

    env = VecFrameStack(make_vec_env(make_pixel_env), 3)  # each frame HxWx3 uint8, 100x100
    model = PPO("CnnPolicy", env, policy_kwargs=dict(
        features_extractor_class=ZooFeaturesExtractor,
        features_extractor_kwargs=dict(encoder="hub:walker_stand-60k")))

SB3 hands the extractor float observations, channels-first and divided by 255 (its
``normalize_images=True``); they are turned back into the exact uint8 frames the encoder was
trained on. The encoder is frozen by default and stays in eval mode whatever ``.train()`` SB3
calls; ``freeze_layers=0`` fine-tunes it with the policy.
"""

from __future__ import annotations

import copy
import math

import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from .encoders import FreezeSpec
from .errors import LeverError
from .gym_wrapper import layer_output_shape
from .zoo.encoder import ZooEncoder, load_encoder


def check_observation_space(space: spaces.Space, zoo: ZooEncoder, normalized_images: bool
                            ) -> None:
    """Refuse, before any training, an observation space the encoder cannot read, naming the
    wrappers that would make it fit."""
    spec = zoo.observation_spec
    stack, channels, render, crop = (spec["frame_stack"], spec["channels"], spec["render_size"],
                                     spec["crop_size"])
    wanted = (f"{zoo.name} reads {stack} stacked {'grayscale' if channels == 1 else 'RGB'} "
              f"frames of {render}x{render} (or {crop}x{crop}), i.e. channels-first "
              f"({stack * channels}, {render}, {render})")
    shape = getattr(space, "shape", None)
    if not isinstance(space, spaces.Box) or shape is None or len(shape) != 3:
        raise LeverError(f"{wanted}; got the observation space {space}: use pixel observations "
                         f"(gymnasium.wrappers.AddRenderObservation(env, render_only=True))")
    fixes = []
    if shape[0] != stack * channels:
        if channels == 1 and shape[0] % 3 == 0:
            fixes.append("make frames grayscale with gymnasium.wrappers.GrayscaleObservation("
                         "env, keep_dim=True)")
        fixes.append(f"stack {stack} frames with VecFrameStack(env, {stack})")
    if shape[1] != shape[2] or shape[1] not in (render, crop):
        fixes.append(f"resize to {render}x{render} with gymnasium.wrappers.ResizeObservation("
                     f"env, ({render}, {render}))")
    if normalized_images and not is_image_space(space):
        fixes.append("use a uint8 Box in [0, 255] (SB3 only scales those to [0, 1]; pass "
                     "normalized_images=False with normalize_images=False)")
    if fixes:
        raise LeverError(f"{wanted}; got {tuple(shape)} {space.dtype}: " + "; ".join(fixes))


class ZooFeaturesExtractor(BaseFeaturesExtractor):
    """Features = the zoo encoder's flattened latent (or ``layer``'s output) of the frame stack.

    ``encoder``: a reference (``hub:NAME``, ``hf://ORG/REPO``, a folder) or a loaded
    ``ZooEncoder``, copied: SAC and TD3 build actor, critic and target extractors from the same
    kwargs, and each must own its weights. ``freeze_layers``: layers ``1..n`` kept fixed ("all"
    by default).
    ``normalized_images``: whether the policy scales images to [0, 1] (SB3's
    ``normalize_images``, True by default); set both to False to feed raw 0..255 values.
    """

    def __init__(self, observation_space: spaces.Box, encoder: str | ZooEncoder,
                 freeze_layers: FreezeSpec = "all", layer: int | None = None,
                 normalized_images: bool = True):
        if isinstance(encoder, ZooEncoder):
            zoo = copy.deepcopy(encoder)
            zoo.encoder.freeze(freeze_layers)  # on top of the layers it already had frozen
        else:
            zoo = load_encoder(encoder, freeze_layers=freeze_layers, device="cpu")
        check_observation_space(observation_space, zoo, normalized_images)
        features_dim = math.prod(layer_output_shape(zoo, layer))
        super().__init__(observation_space, features_dim)
        self.zoo = zoo
        self.layer = layer
        self.normalized_images = normalized_images
        self.fully_frozen = zoo.encoder.frozen_layers == zoo.encoder.num_layers
        self.train()  # SB3 builds policies in train mode

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        pixels = observations * 255 if self.normalized_images else observations
        frames = pixels.round().clamp_(0, 255).to(torch.uint8)  # exactly the rendered bytes
        return self.zoo(frames, self.layer).flatten(1).float()

    def train(self, mode: bool = True) -> ZooFeaturesExtractor:
        """SB3 switches the policy between train and eval; a fully frozen encoder stays in eval
        (a partly frozen one keeps its frozen layers in eval itself)."""
        super().train(mode)
        if self.fully_frozen:
            self.zoo.eval()
        return self
