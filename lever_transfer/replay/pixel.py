"""Pixel replay: every rendered frame stored once, frame stacks rebuilt when sampling.

A stacked observation of S frames shares S-1 frames with its predecessor and its successor, so
storing stacked obs and next_obs (as the reference code does, 9x100x100 twice per transition)
keeps each frame 2S times. Here an entry keeps only its newest frame; the stack of entry i is
frames i-S+1..i, clamped at the episode's first entry (a reset repeats its first frame, as the
environment's frame stack does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .ring import DEFAULT_BLOCK_BYTES, EntryRing
from .storage import BlockArray


@dataclass(frozen=True)
class PixelBatch:
    obs: np.ndarray  # uint8 [B, S*C, H, W]
    action: np.ndarray  # float32 [B, A]
    reward: np.ndarray  # float32 [B]
    discount: np.ndarray  # float32 [B]: 0 where the episode terminated
    next_obs: np.ndarray  # uint8 [B, S*C, H, W]


class PixelReplay(EntryRing):
    def __init__(self, capacity: int, frame_shape: tuple[int, int, int], frame_stack: int,
                 action_dim: int, block_items: int | None = None):
        self.frame_shape = tuple(int(d) for d in frame_shape)
        self.frame_stack = int(frame_stack)
        frame_bytes = int(np.prod(self.frame_shape))
        block_items = block_items or max(1, DEFAULT_BLOCK_BYTES // frame_bytes)
        super().__init__(capacity, action_dim, block_items)
        self.frames = BlockArray(capacity, self.frame_shape, np.uint8, self.block_items)

    def payload(self) -> dict[str, BlockArray]:
        return {"frames": self.frames}

    def init_args(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "frame_shape": list(self.frame_shape),
                "frame_stack": self.frame_stack, "action_dim": self.action_dim,
                "block_items": self.block_items}

    def _newest_frame(self, obs: np.ndarray) -> np.ndarray:
        channels = self.frame_shape[0]
        if obs.shape != (channels * self.frame_stack, *self.frame_shape[1:]):
            raise ValueError(f"observation of shape {obs.shape} does not fit this replay "
                             f"({self.frame_stack} frames of {self.frame_shape})")
        return obs[-channels:]

    def add_reset(self, obs: np.ndarray) -> None:
        self._start_episode({"frames": self._newest_frame(obs)})

    def add_step(self, action: np.ndarray, reward: float, terminated: bool,
                 next_obs: np.ndarray) -> None:
        self._continue_episode(action, reward, terminated, {"frames": self._newest_frame(next_obs)})

    # ------------------------------------------------------------------ stacks
    def _frame_ids(self, ids: np.ndarray, extra: int = 0) -> np.ndarray:
        """[n, S + extra] frame ids: the stack of each entry, plus ``extra`` following frames."""
        first = self.episode_first.get(ids % self.capacity)
        offsets = np.arange(-(self.frame_stack - 1), 1 + extra, dtype=np.int64)
        return np.maximum(ids[:, None] + offsets, first[:, None])

    def _usable(self, ids: np.ndarray) -> np.ndarray:
        usable = super()._usable(ids)
        if usable.any():
            first = self.episode_first.get(ids[usable] % self.capacity)
            oldest_needed = np.maximum(ids[usable] - (self.frame_stack - 1), first)
            usable[usable] = oldest_needed >= self.oldest
        return usable

    def _edge(self) -> int:
        return self.frame_stack - 1

    def entries_to_convert(self) -> np.ndarray:
        """Ids of every entry whose stack can be rebuilt, oldest first (the newest included)."""
        self._check_usable()
        ids = np.arange(self.oldest, self.total, dtype=np.int64)
        if ids.size == 0:
            return ids
        first = self.episode_first.get(ids % self.capacity)
        return ids[np.maximum(ids - (self.frame_stack - 1), first) >= self.oldest]

    def stacks(self, ids: np.ndarray) -> np.ndarray:
        """uint8 [n, S*C, H, W] observations of entries ``ids``."""
        self._check_usable()
        frames = self.frames.get(self._frame_ids(np.asarray(ids, dtype=np.int64)) % self.capacity)
        return frames.reshape(len(ids), -1, *self.frame_shape[1:])

    def sample(self, batch_size: int, rng: np.random.Generator) -> PixelBatch:
        ids = self.sample_ids(batch_size, rng)
        # S + 1 frames per transition: obs and next_obs are overlapping views of one gather
        frames = self.frames.get(self._frame_ids(ids, extra=1) % self.capacity)
        height, width = self.frame_shape[1:]
        obs = frames[:, :-1].reshape(batch_size, -1, height, width)
        next_obs = frames[:, 1:].reshape(batch_size, -1, height, width)
        action, reward, discount = self.transition(ids)
        return PixelBatch(obs, action, reward, discount, next_obs)
