"""Pixel replay: every rendered frame stored once, frame stacks rebuilt when sampling.

A stacked observation of S frames shares S-1 frames with its predecessor and its successor, so
storing stacked obs and next_obs per transition (as the reference code does, 9x100x100 twice)
keeps each frame 2S times. Here an entry keeps only its newest frame; the stack of entry ``i`` is
frames ``i-S+1 .. i`` clamped at the episode's first entry (the environment's frame stack repeats
the reset frame), and the next observation is the stack of ``i + 1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .samplers import Sampler
from .storage import EntryRing, meta_dtype


@dataclass(frozen=True)
class PixelBatch:
    obs: np.ndarray  # uint8 [B, S*C, H, W]
    action: np.ndarray  # float32 [B, A]
    reward: np.ndarray  # float32 [B]
    discount: np.ndarray  # float32 [B]: factor on next_obs's value (0: terminated)
    next_obs: np.ndarray  # uint8 [B, S*C, H, W]
    ids: np.ndarray | None = None  # int64 [B] entry numbers: update_priorities takes them
    weights: np.ndarray | None = None  # float32 [B] importance weights (prioritized sampler)


def pixel_entry_bytes(frame_shape: tuple[int, int, int], action_dim: int) -> int:
    """Real bytes of one entry of a ``PixelReplay`` of this layout, without building one."""
    return int(np.prod(frame_shape)) + meta_dtype(action_dim, episode_first=True).itemsize


class PixelReplay(EntryRing):
    """A ring of ``capacity`` entries, one per observation, each its newest uint8 frame."""

    _payload_name = "frames"

    def __init__(self, capacity: int, frame_shape: tuple[int, int, int], frame_stack: int,
                 action_dim: int, block_items: int = 1000, n_step: int = 1, gamma: float = 1.0,
                 sampler: Sampler | Mapping[str, Any] | None = None):
        if len(frame_shape) != 3 or min(frame_shape) < 1 or frame_stack < 1:
            raise ValueError(f"frame_shape {frame_shape} must be (C, H, W) and frame_stack "
                             f"({frame_stack}) >= 1")
        self.frame_shape = tuple(int(d) for d in frame_shape)
        self.frame_stack = int(frame_stack)
        self._edge = self.frame_stack - 1  # after wrap-around, the oldest S-1 lack frames
        super().__init__(capacity, action_dim, self.frame_shape, np.uint8, block_items,
                         episode_first=True, n_step=n_step, gamma=gamma, sampler=sampler)
        self.episode_start = 0  # number of the current episode's first entry
        self._offsets = np.arange(-(self.frame_stack - 1), 2, dtype=np.int64)  # S + 1 frames

    @property
    def frames(self):
        """The frame storage (a ``BlockArray``)."""
        return self.payload

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.frame_shape
        return channels * self.frame_stack, height, width

    def init_args(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "frame_shape": list(self.frame_shape),
                "frame_stack": self.frame_stack, "action_dim": self.action_dim,
                "block_items": self.block_items, **self._base_args()}

    # ------------------------------------------------------------------------------ writing
    def _newest_frame(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.shape != self.obs_shape or obs.dtype != np.uint8:
            raise ValueError(f"observation {obs.dtype} {obs.shape} does not fit this replay "
                             f"(uint8 {self.obs_shape}: {self.frame_stack} stacked frames)")
        return obs[-self.frame_shape[0]:]

    def add_reset(self, obs: np.ndarray) -> None:
        """Start an episode at ``obs`` (uint8 [S*C, H, W]); only its newest frame is stored."""
        self._check_usable()
        frame = self._newest_frame(obs)
        self.episode_start = self.total
        self._append(frame, episode_first=self.episode_start)
        self.open = True
        self._settle()

    def add_step(self, action: np.ndarray, reward: float, terminated: bool,
                 next_obs: np.ndarray) -> None:
        """Record the step from the newest observation to ``next_obs``."""
        self._check_usable()
        frame = self._newest_frame(next_obs)
        self._close_newest(action, reward, terminated)
        self._append(frame, episode_first=self.episode_start)
        self.open = not terminated
        self._settle()

    # ------------------------------------------------------------------------------ stacks
    def _frame_ids(self, ids: np.ndarray, first: np.ndarray, count: int) -> np.ndarray:
        """[n, count] frame numbers from ``i-S+1`` on, clamped at each entry's episode start."""
        offsets = self._offsets[:count]
        return np.maximum(ids[:, None] + offsets, first[:, None])

    def _stored(self, ids: np.ndarray, meta: np.ndarray) -> np.ndarray:
        # next_obs needs no check: same episode, and its stack starts one frame later
        earliest = np.maximum(ids - (self.frame_stack - 1), meta["episode_first"])
        return meta["starts"] & (earliest >= self.oldest)

    def _rebuildable(self, ids: np.ndarray) -> np.ndarray:
        in_ring = (ids >= self.oldest) & (ids < self.total)
        first = self.meta.get(np.where(in_ring, ids, self.oldest) % self.capacity)["episode_first"]
        return in_ring & (np.maximum(ids - (self.frame_stack - 1), first) >= self.oldest)

    def frame_ids(self, entry_ids: np.ndarray) -> np.ndarray:
        """[n, S] numbers of the frames that the stacks of ``entry_ids`` (in the ring) read."""
        ids = np.asarray(entry_ids, dtype=np.int64).reshape(-1)
        first = self.meta.get(ids % self.capacity)["episode_first"]
        return self._frame_ids(ids, first, self.frame_stack)

    def entries_to_convert(self) -> np.ndarray:
        """Numbers of the entries whose stack can be rebuilt, oldest first (the newest included).

        Only the oldest S-1 entries can lack frames, and once one has them all later ones do.
        """
        self._check_usable()
        edge = np.arange(self.oldest, min(self.total, self.oldest + self._edge), dtype=np.int64)
        bad = int((~self._rebuildable(edge)).sum()) if edge.size else 0
        return np.arange(self.oldest + bad, self.total, dtype=np.int64)

    def stacks(self, entry_ids: np.ndarray) -> np.ndarray:
        """uint8 [n, S*C, H, W] observations of entries ``entry_ids`` (rebuildable ones)."""
        self._check_usable()
        ids = np.asarray(entry_ids, dtype=np.int64).reshape(-1)
        if not self._rebuildable(ids).all():
            raise IndexError("some entries are not in the ring or lack frames of their stack")
        frames = self.frames.get(self.frame_ids(ids) % self.capacity)
        return frames.reshape(ids.size, *self.obs_shape)

    # ------------------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, rng: np.random.Generator,
               step: int | None = None) -> PixelBatch:
        """Transitions (``n_step`` long, see ``EntryRing._returns``) as the sampler draws them
        at agent ``step`` (its schedule; None: annealed); for one step, obs and next_obs are
        overlapping views of one gather."""
        self._check_usable()
        ids, meta, weights = self._draw(batch_size, rng, step)
        reward, discount, next_ids = self._returns(ids, meta)
        first, stack = meta["episode_first"], self.frame_stack
        if self.n_step == 1:
            frames = self.frames.get(self._frame_ids(ids, first, stack + 1) % self.capacity)
            obs, next_obs = frames[:, :-1], frames[:, 1:]  # [B, S, C, H, W] each
        else:  # the next observation is in the same episode: same first entry
            frame_ids = np.concatenate([self._frame_ids(ids, first, stack),
                                        self._frame_ids(next_ids, first, stack)], axis=1)
            frames = self.frames.get(frame_ids % self.capacity)
            obs, next_obs = frames[:, :stack], frames[:, stack:]
        shape = (batch_size, *self.obs_shape)
        return PixelBatch(obs.reshape(shape), self._actions(meta), reward, discount,
                          next_obs.reshape(shape), ids, weights)

    # ------------------------------------------------------------------------------ state
    def _counters(self) -> dict[str, int]:
        return {**super()._counters(), "episode_start": self.episode_start}

    def _load_counters(self, counters: dict[str, int]) -> None:
        super()._load_counters(counters)
        self.episode_start = counters["episode_start"]
