"""Crops: random for training (CURL/RAD's augmentation), centred for acting and evaluation;
random shifts (DrQ's augmentation: edge-replicating pad, then a crop back to the image size).

Augmentation belongs to the encoder's input, not to the replay: the pixel replay returns full
render-size stacks, and the agent crops them on the device it trains on.
"""

from __future__ import annotations

import torch


def random_crop(obs: torch.Tensor, size: int, generator: torch.Generator | None = None
                ) -> torch.Tensor:
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


def random_shift(obs: torch.Tensor, size: int, pad: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ's augmentation: a ``size`` x ``size`` window of every image of a [B, C, H, W] batch,
    shifted from the centre by an independent -pad..pad pixels per image and axis, with the
    image's edge pixels repeated where the window leaves it (offsets drawn as ``random_crop``
    draws them: all tops, then all lefts). The dtype is kept (uint8 in, uint8 out).

    With H == W == size this is DrQ's pad-``pad``-by-replication and crop back to the image
    size; on a larger render (CURL's 100 for an 84 encoder) the shifted window mostly stays in
    real pixels. ``pad`` 0 is the centre crop and draws nothing. Replicate-padding then cropping
    is a clamped index, read as one gather without building the padded batch.
    """
    if pad == 0:
        return center_crop(obs, size)
    batch, channels, height, width = obs.shape
    top = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device="cpu")
    left = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device="cpu")
    device = obs.device
    first_row = (height - size) // 2 - pad  # window's top row at draw 0
    first_col = (width - size) // 2 - pad
    rows = (torch.arange(size, device=device) + (top.to(device) + first_row)[:, None]
            ).clamp_(0, height - 1)  # [B, size]
    cols = (torch.arange(size, device=device) + (left.to(device) + first_col)[:, None]
            ).clamp_(0, width - 1)  # [B, size]
    index = (rows[:, :, None] * width + cols[:, None, :]).view(batch, 1, size * size)
    flat = obs.reshape(batch, channels, height * width)
    return flat.gather(2, index.expand(batch, channels, -1)).view(batch, channels, size, size)
