"""LeVER's switch for the replay: re-encode pixels into latents in chunks, and size the result.

Conversion walks the pixel entries oldest first, ``chunk`` at a time, encodes their stacks, appends
the latents with the same transitions, and releases every pixel block that no later stack needs,
so memory never holds the buffer twice. Every entry whose stack can be rebuilt is converted,
the newest included (the reference code lost the transition collected exactly at Tf): the
episode under way continues on the new replay.

Capacity (section 4.2): ``Cb = floor(C * P / (4 * N * K * L))``, the old capacity times the ratio
of an entry's bytes before and after. ``grown_capacity`` uses the real bytes of both replays'
entries (payload plus metadata), which is what a memory budget really buys.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ReplayError
from .latent import LatentReplay
from .pixel import PixelReplay

Encode = Callable[[np.ndarray], np.ndarray]


def paper_capacity(capacity: int, pixel_bytes: int, networks: int, augmentations: int,
                   latent_dim: int, float_bytes: int = 4) -> int:
    """The paper's formula, Cb = floor(C * P / (float_bytes * N * K * L))."""
    return capacity * pixel_bytes // (float_bytes * networks * augmentations * latent_dim)


def grown_capacity(capacity: int, pixel_entry_bytes: int, latent_entry_bytes: int,
                   max_entries: int | None = None) -> int:
    """Entries a latent replay can hold in the memory of ``capacity`` pixel entries."""
    grown = capacity * pixel_entry_bytes // latent_entry_bytes
    return max(capacity, min(grown, max_entries)) if max_entries is not None else grown


def capacity_from_memory(budget_bytes: int, entry_bytes: int, batch_size: int) -> int:
    """Entries that fit a memory budget; refuses a budget that cannot hold one batch."""
    capacity = budget_bytes // entry_bytes
    minimum = batch_size + 8  # a batch of transitions plus frame-stack and episode edges
    if capacity < minimum:
        raise ReplayError(
            f"a replay budget of {budget_bytes:,} B holds {capacity} entries of {entry_bytes:,} B, "
            f"fewer than one batch of {batch_size}: raise --replay-memory to at least "
            f"{minimum * entry_bytes / 1e6:.1f}MB or lower batch_size")
    return capacity


def _last_use(pixel: PixelReplay, ids: np.ndarray) -> np.ndarray:
    """For every frame block: the newest id whose stack reads from it (-1 if none)."""
    blocks = pixel.frames.blocks
    last = np.full(len(blocks), -1, dtype=np.int64)
    np.maximum.at(last, (ids % pixel.capacity) // pixel.block_items, ids)
    return last


def convert_to_latent(pixel: PixelReplay, encode: Encode, latent_shape: tuple[int, ...],
                      capacity: int, dtype: np.dtype | str = np.float32,
                      chunk: int = 100) -> LatentReplay:
    """Re-encode ``pixel`` into a new latent replay of ``capacity`` entries; ``pixel`` is consumed.

    ``encode(stacks uint8 [n, S*C, H, W]) -> [n, *latent_shape]``.
    """
    ids = pixel.entries_to_convert()
    if capacity < len(ids):
        ids = ids[len(ids) - capacity:]  # keep the newest
    latent = LatentReplay(capacity, latent_shape, pixel.action_dim, dtype)
    last_use = _last_use(pixel, ids)
    offset = int(ids[0]) if len(ids) else 0
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        slots = part % pixel.capacity
        starts = pixel.starts.get(slots)
        latent.append_converted(
            encode(pixel.stacks(part)), pixel.action.get(slots), pixel.reward.get(slots),
            pixel.discount.get(slots), starts, pixel.episode_first.get(slots) - offset,
            in_episode=pixel.in_episode)
        _release_done(pixel, last_use, done=int(part[-1]))
    pixel.consumed = True
    for array in pixel.arrays().values():
        for b in range(len(array.blocks)):
            array.release(b)
    return latent


def _release_done(pixel: PixelReplay, last_use: np.ndarray, done: int) -> None:
    """Release frame blocks whose last reader is converted and that no later stack reaches.

    A later entry e > done reads frames e-S+1..e, i.e. ids above done - S + 1.
    """
    horizon = done - (pixel.frame_stack - 1)
    for b, last in enumerate(last_use):
        if 0 <= last < horizon and pixel.frames.blocks[b] is not None:
            pixel.frames.release(b)
