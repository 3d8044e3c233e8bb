"""LeVER's switch for the replay: re-encode pixels into latents in chunks, and size the result.

Conversion walks the convertible pixel entries oldest first, ``chunk`` at a time, encodes their
stacks, appends the latents with the same transitions (and the sampler's per-entry state: the
priorities, when prioritized; n-step length and discount too), and releases every pixel block
that no later chunk reads, so memory never holds the buffer twice. The newest entry is converted
too (the reference code lost the transition collected exactly at Tf): the episode under way goes
on in the latent replay.

Memory while converting: ``pixel.nbytes + latent.nbytes`` never exceeds the pixel replay's
``nbytes`` before conversion by more than one latent block (sized like a pixel block in bytes)
plus the latents of ``2 * pixel.block_items + frame_stack + chunk`` entries: the pixel blocks
still being read (the one holding the oldest entry also holds the newest after wrap-around)
and the chunk in flight. With 3x100x100 frames that is about 1 % of a 3 GB replay.

Capacity (section 4.2): ``Cb = floor(C * P / (4 * N * K * L))``, the old capacity times the ratio
of an entry's bytes before and after. ``grown_capacity`` takes the real bytes of both replays'
entries (payload plus metadata), which is what a memory budget really buys.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Callable

import numpy as np

from ..errors import ReplayError
from .latent import LatentReplay, latent_entry_bytes
from .pixel import PixelReplay

Encode = Callable[[np.ndarray], np.ndarray]

RETIRED = ("this pixel replay was converted to latents and holds nothing now: "
           "use the LatentReplay that convert_to_latent returned")


def convert_to_latent(pixel: PixelReplay, encode: Encode, latent_shape: tuple[int, ...],
                      capacity: int, dtype: np.dtype | type | str = np.float32,
                      chunk: int = 100) -> LatentReplay:
    """Re-encode ``pixel`` into a new latent replay of ``capacity`` entries; ``pixel`` is spent.

    ``encode(stacks uint8 [n, S*C, H, W]) -> [n, *latent_shape]``. If fewer than the convertible
    entries fit, the newest are kept.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    ids = pixel.entries_to_convert()[-capacity:] if capacity > 0 else np.empty(0, np.int64)
    entry_bytes = latent_entry_bytes(latent_shape, pixel.action_dim, dtype)
    block_items = max(1, pixel.block_items * pixel.bytes_per_entry // entry_bytes)
    latent = LatentReplay(capacity, latent_shape, pixel.action_dim, dtype, block_items,
                          pixel.n_step, pixel.gamma, pixel.sampler.spawn())
    last_reader = _last_reader(pixel, ids, chunk)
    for block in np.flatnonzero(last_reader < 0).tolist():
        pixel.release_block(block)  # nothing converted reads it
    open_after = pixel.open and ids.size > 0  # the convertible entries end at the newest
    try:
        for index, start in enumerate(range(0, ids.size, chunk)):
            part = ids[start:start + chunk]
            _append_chunk(latent, pixel, part, encode(pixel.stacks(part)),
                          open_after and start + part.size == ids.size)
            for block in np.flatnonzero(last_reader == index).tolist():
                pixel.release_block(block)
    except BaseException:
        pixel.retire("this pixel replay was being converted to latents when conversion failed; "
                     "its memory is partly released and it cannot be used")
        raise
    pixel.retire(RETIRED)
    return latent


def _append_chunk(latent: LatentReplay, pixel: PixelReplay, part: np.ndarray,
                  encoded: np.ndarray, open_after: bool) -> None:
    """Append the encoded entries ``part`` of ``pixel`` with their transitions."""
    encoded = np.asarray(encoded)
    if encoded.shape != (part.size, *latent.latent_shape):
        raise ValueError(f"encode returned shape {encoded.shape} for {part.size} stacks, "
                         f"expected {(part.size, *latent.latent_shape)}")
    slots = part % pixel.capacity
    meta = pixel.meta.get(slots)
    latent.append_entries(encoded, meta["action"], meta["reward"], meta["discount"],
                          meta["starts"], open_after, pixel.sampler.export_slots(slots))


def _last_reader(pixel: PixelReplay, ids: np.ndarray, chunk: int) -> np.ndarray:
    """For every pixel block, the index of the last chunk that reads it (-1: none does)."""
    last = np.full(pixel.frames.num_blocks, -1, dtype=np.int64)
    if ids.size:
        frames = pixel.frame_ids(ids)  # [n, S]: the entry's own frame (and metadata) included
        blocks = (frames % pixel.capacity) // pixel.block_items
        readers = np.repeat(np.arange(ids.size, dtype=np.int64) // chunk, pixel.frame_stack)
        np.maximum.at(last, blocks.reshape(-1), readers)
    return last


# ------------------------------------------------------------------------------ capacity
def paper_capacity(capacity: int, pixel_bytes: int, networks: int, augmentations: int,
                   latent_dim: int, float_bytes: int = 4) -> int:
    """Section 4.2's formula, ``Cb = floor(C * P / (float_bytes * N * K * L))``."""
    return capacity * pixel_bytes // (float_bytes * networks * augmentations * latent_dim)


def grown_capacity(capacity: int, pixel_entry_bytes: int, latent_entry_bytes: int,
                   max_entries: int | None = None) -> int:
    """Latent entries that fit the memory of ``capacity`` pixel entries, at most ``max_entries``.

    ``max_entries`` (what the rest of training can fill) keeps a short run from allocating
    memory it will never use.
    """
    if min(capacity, pixel_entry_bytes, latent_entry_bytes) < 1:
        raise ValueError("capacity and entry bytes must be positive")
    grown = capacity * pixel_entry_bytes // latent_entry_bytes
    return grown if max_entries is None else min(grown, max(1, max_entries))


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_MEMORY = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)
_MEMORY_FORMS = ("write a positive size such as '0.03GB', '30MB', '512KiB' or '1000000' "
                 "(units B, KB, MB, GB, TB = powers of 1000; KiB, MiB, GiB, TiB = of 1024)")


def parse_memory(text: str | int) -> int:
    """Bytes in a budget such as "0.03GB"; decimal GB as the paper (0.03 GB = 1000 frames)."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    match = _MEMORY.fullmatch(text) if isinstance(text, str) else None
    unit = match[2].lower() if match else ""
    if not match or unit not in _UNITS:
        raise ReplayError(f"cannot read {text!r} as a memory size: {_MEMORY_FORMS}")
    try:
        size = int(Decimal(match[1]) * _UNITS[unit])
    except InvalidOperation:  # pragma: no cover - the pattern only lets decimals through
        size = 0
    if size < 1:
        raise ReplayError(f"memory size {text!r} is less than one byte: {_MEMORY_FORMS}")
    return size


REPLAY_SLACK = 8  # entries beyond one batch: frame-stack edge, newest entry, episode ends


def capacity_from_memory(budget_bytes: int, entry_bytes: int, batch_size: int) -> int:
    """Entries that fit ``budget_bytes``; refuses a budget that cannot serve one batch."""
    if entry_bytes < 1 or batch_size < 1:
        raise ValueError("entry_bytes and batch_size must be positive")
    capacity = max(0, budget_bytes) // entry_bytes
    minimum = batch_size + REPLAY_SLACK
    if capacity < minimum:
        need_mb = -(-minimum * entry_bytes // 100_000) / 10  # rounded up to 0.1 MB
        raise ReplayError(
            f"a replay memory budget of {budget_bytes:,} B holds {capacity} entries of "
            f"{entry_bytes:,} B, fewer than batch_size + {REPLAY_SLACK} = {minimum}: raise "
            f"replay_memory (--replay-memory) to at least {need_mb:g}MB or lower batch_size")
    return capacity
