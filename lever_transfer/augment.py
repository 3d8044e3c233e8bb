"""Crops: random for training (CURL/RAD's augmentation), centred for acting and evaluation.

Augmentation belongs to the encoder's input, not to the replay: the pixel replay returns full
render-size stacks, and the agent crops them on the device it trains on.
"""

from __future__ import annotations

import torch


def random_crop(obs: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Independent random ``size`` x ``size`` crop of every image in a [B, C, H, W] batch."""
    batch, _, height, width = obs.shape
    if height == size and width == size:
        return obs
    top = torch.randint(0, height - size + 1, (batch,), generator=generator, device="cpu")
    left = torch.randint(0, width - size + 1, (batch,), generator=generator, device="cpu")
    return crop_at(obs, top.to(obs.device), left.to(obs.device), size)


def crop_at(obs: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Crop image b of the batch at (top[b], left[b]) as one gather from a view of all windows."""
    windows = obs.unfold(2, size, 1).unfold(3, size, 1)  # [B, C, H-size+1, W-size+1, size, size]
    batch_index = torch.arange(obs.shape[0], device=obs.device)
    return windows[batch_index, :, top, left]


def center_crop(obs: torch.Tensor, size: int) -> torch.Tensor:
    """The evaluation view: the centre ``size`` x ``size`` of each image ([..., H, W])."""
    height, width = obs.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return obs[..., top:top + size, left:left + size]
