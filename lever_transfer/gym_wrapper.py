"""Zoo encoders in any gymnasium project: an observation wrapper that turns frames into latents.

A zoo encoder wants exactly what its source task rendered (``observation_spec``: the last few
square uint8 frames, oldest first). This wrapper builds that input from any environment that
shows frames, as its observation (DMC-like HxWx3 uint8) or through ``render()`` (classic control,
made with ``render_mode="rgb_array"``), so an agent sees only the frozen latent::

    env = gymnasium.make("CartPole-v1", render_mode="rgb_array")
    env = ZooLatentObservation(env, "hub:walker_stand-60k")
    latent, info = env.reset(seed=0)  # float32 (50,)

Frames are resized with torch (area when shrinking, antialiased bilinear when enlarging), not
OpenCV, so this needs only gymnasium on top of the core install (``pip install
lever-transfer[gym]``). The resize does not keep the aspect ratio, like gymnasium's
``ResizeObservation``. Atari's frame skip and max-pooling are the environment's business
(``AtariPreprocessing``), not this wrapper's.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F

from .encoders import FreezeSpec
from .errors import LeverError
from .zoo.encoder import ZooEncoder, load_encoder

# ITU-R BT.601 luma, the weights OpenCV and the ALE use for grayscale
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)


def zoo_encoder(encoder: str | ZooEncoder, freeze_layers: FreezeSpec = "all",
                device: str | torch.device = "cpu") -> ZooEncoder:
    """A loaded encoder as it is, or ``encoder`` (a reference) loaded with these settings."""
    if isinstance(encoder, ZooEncoder):
        return encoder
    return load_encoder(encoder, freeze_layers=freeze_layers, device=device)


def layer_output_shape(zoo: ZooEncoder, layer: int | None) -> tuple[int, ...]:
    """Per-sample shape of the output of ``layer`` (None: the last layer, the latent)."""
    count = zoo.encoder.num_layers
    if layer is None:
        return zoo.latent_shape
    if not isinstance(layer, int) or isinstance(layer, bool) or not 1 <= layer <= count:
        raise LeverError(f"layer must be 1..{count} for {zoo.name} "
                         f"({', '.join(zoo.layer_names)}) or None for the latent, got {layer!r}")
    return tuple(zoo.encoder.output_shape(layer))


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[..., C, H, W]`` -> uint8 ``[..., C, size, size]``: area averaging when shrinking
    (OpenCV's INTER_AREA, which gymnasium's ResizeObservation uses), bilinear otherwise."""
    if frames.shape[-2:] == (size, size):
        return frames
    lead = frames.shape[:-3]
    x = frames.reshape(-1, *frames.shape[-3:]).float()
    if frames.shape[-2] >= size and frames.shape[-1] >= size:
        x = F.interpolate(x, size=(size, size), mode="area")
    else:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).reshape(*lead, -1, size, size)


def to_grayscale(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., 3, H, W]`` RGB -> uint8 ``[..., 1, H, W]`` luma."""
    luma = (frames.float() * _LUMA.to(frames.device)).sum(-3, keepdim=True)
    return luma.round_().clamp_(0, 255).to(torch.uint8)


def _is_frame_space(space: gymnasium.Space, grayscale: bool) -> bool:
    """An HxWx3 uint8 Box (or HxW / HxWx1 when the encoder is grayscale)."""
    if not isinstance(space, gymnasium.spaces.Box) or space.dtype != np.uint8:
        return False
    shape = space.shape
    return (len(shape) == 3 and shape[2] == 3) or (grayscale and (
        len(shape) == 2 or (len(shape) == 3 and shape[2] == 1)))


class ZooLatentObservation(gymnasium.ObservationWrapper):
    """Observations become the frozen zoo encoder's latent of the last ``frame_stack`` frames.

    ``encoder``: a reference (``hub:NAME``, ``hf://ORG/REPO``, a folder), loaded frozen on
    ``device``, or an already-loaded ``ZooEncoder``, used where it is. ``layer``: take the output
    of that layer (1-based) instead of the latent. The encoder is put in eval mode and run under
    ``torch.no_grad()``: this wrapper never trains it.
    """

    def __init__(self, env: gymnasium.Env, encoder: str | ZooEncoder, layer: int | None = None,
                 device: str | torch.device = "cpu"):
        super().__init__(env)
        self.encoder = zoo_encoder(encoder, freeze_layers="all", device=device).eval()
        self.layer = layer
        spec = self.encoder.observation_spec
        self.render_size: int = spec["render_size"]
        self.grayscale = spec["channels"] == 1
        self.frames_from_render = self._frames_come_from_render(env)
        self.frame_stack: int = spec["frame_stack"]
        self.frames: deque[torch.Tensor] = deque(maxlen=self.frame_stack)
        shape = layer_output_shape(self.encoder, layer)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, shape, np.float32)

    def _frames_come_from_render(self, env: gymnasium.Env) -> bool:
        if _is_frame_space(env.observation_space, self.grayscale):
            return False
        if env.render_mode == "rgb_array":
            return True
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        wanted = "HxW(x1) or HxWx3" if self.grayscale else "HxWx3"
        raise LeverError(
            f"{name} observations are {env.observation_space}, not {wanted} uint8 frames, and it "
            f"renders no frames (render_mode={env.render_mode!r}): make it with "
            f"gymnasium.make(..., render_mode=\"rgb_array\")")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        self.frames.clear()  # the first frame of the episode then fills the whole stack
        return super().reset(seed=seed, options=options)

    def observation(self, observation: Any) -> np.ndarray:
        frame = self.prepare_frame(self.env.render() if self.frames_from_render else observation)
        if not self.frames:
            self.frames.extend([frame] * self.frame_stack)
        else:
            self.frames.append(frame)
        stack = torch.cat(list(self.frames), dim=0)  # [frame_stack * channels, H, W], oldest first
        with torch.no_grad():
            latent = self.encoder(stack[None], self.layer)[0]
        return latent.to("cpu", torch.float32).numpy()

    def prepare_frame(self, frame: Any) -> torch.Tensor:
        """One HxWx3 (or HxW(x1) grayscale) uint8 frame -> the encoder's uint8 ``[C, R, R]``."""
        array = np.asarray(frame)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise LeverError(f"expected an HxWx3 uint8 frame, got {array.dtype} {array.shape}; "
                             f"is the environment's render_mode \"rgb_array\"?")
        x = torch.from_numpy(np.ascontiguousarray(array))
        x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)  # -> [C, H, W]
        if self.grayscale and x.shape[0] == 3:
            x = to_grayscale(x)
        elif not self.grayscale and x.shape[0] != 3:
            raise LeverError(f"{self.encoder.name} wants RGB frames, got {x.shape[0]} channel(s)")
        return resize_frames(x, self.render_size)
