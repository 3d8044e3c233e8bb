"""Latent replay: K augmented latents per observation, for N networks, float32 or float16.

A latent already summarises the frame stack, so entries need no stacking. The K copies come from
independent random crops (section 4.2: augmentation cannot happen after encoding, so it happens
before); sampling picks one copy per transition and uses it for the observation and the next
observation and for every network, so critic and actor see one consistent view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .ring import DEFAULT_BLOCK_BYTES, EntryRing
from .storage import BlockArray


@dataclass(frozen=True)
class LatentBatch:
    latent: np.ndarray  # float32 [B, N, *feature]
    next_latent: np.ndarray  # float32 [B, N, *feature]
    action: np.ndarray  # float32 [B, A]
    reward: np.ndarray  # float32 [B]
    discount: np.ndarray  # float32 [B]


class LatentReplay(EntryRing):
    def __init__(self, capacity: int, latent_shape: tuple[int, ...], action_dim: int,
                 dtype: np.dtype | str = np.float32, block_items: int | None = None):
        self.latent_shape = tuple(int(d) for d in latent_shape)  # (K, N, *feature)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise ValueError(f"latents are stored as float32 or float16, not {self.dtype}")
        entry_bytes = int(np.prod(self.latent_shape)) * self.dtype.itemsize
        block_items = block_items or max(1, DEFAULT_BLOCK_BYTES // entry_bytes)
        super().__init__(capacity, action_dim, block_items)
        self.latents = BlockArray(capacity, self.latent_shape, self.dtype, self.block_items)

    @property
    def augmentations(self) -> int:
        return self.latent_shape[0]

    def payload(self) -> dict[str, BlockArray]:
        return {"latents": self.latents}

    def init_args(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "latent_shape": list(self.latent_shape),
                "action_dim": self.action_dim, "dtype": self.dtype.name,
                "block_items": self.block_items}

    def _check(self, latents: np.ndarray) -> np.ndarray:
        if latents.shape != self.latent_shape:
            raise ValueError(f"latents of shape {latents.shape} do not fit this replay "
                             f"{self.latent_shape}")
        return latents

    def add_reset(self, latents: np.ndarray) -> None:
        self._start_episode({"latents": self._check(latents)})

    def add_step(self, action: np.ndarray, reward: float, terminated: bool,
                 next_latents: np.ndarray) -> None:
        self._continue_episode(action, reward, terminated, {"latents": self._check(next_latents)})

    def append_converted(self, latents: np.ndarray, action: np.ndarray, reward: np.ndarray,
                         discount: np.ndarray, starts: np.ndarray, episode_first: np.ndarray,
                         in_episode: bool) -> None:
        """Append entries converted from a pixel replay, in order, with their transitions.

        ``episode_first`` is in this replay's numbering (it may be negative for an episode that
        began before the first converted entry); ``in_episode`` says whether the last entry's
        episode goes on, so that ``add_step`` can chain onto it.
        """
        n = len(latents)
        ids = np.arange(self.total, self.total + n, dtype=np.int64)
        slots = ids % self.capacity
        evicted = ids[ids >= self.capacity] % self.capacity
        if evicted.size:
            self.transitions -= int(self.starts.get(evicted).sum())
        self.latents.set_many(slots, latents.astype(self.dtype, copy=False))
        self.action.set_many(slots, action)
        self.reward.set_many(slots, reward)
        self.discount.set_many(slots, discount)
        self.starts.set_many(slots, starts)
        self.episode_first.set_many(slots, episode_first)
        self.transitions += int(starts.sum())
        self.total += n
        if n:
            self.current_episode, self.in_episode = int(episode_first[-1]), in_episode

    def sample(self, batch_size: int, rng: np.random.Generator) -> LatentBatch:
        ids = self.sample_ids(batch_size, rng)
        copy = rng.integers(0, self.augmentations, batch_size)
        rows = np.arange(batch_size)
        pair = self.latents.get(np.stack([ids, ids + 1], axis=1) % self.capacity)  # [B, 2, K, ...]
        latent = pair[rows, 0, copy].astype(np.float32, copy=False)
        next_latent = pair[rows, 1, copy].astype(np.float32, copy=False)
        action, reward, discount = self.transition(ids)
        return LatentBatch(latent, next_latent, action, reward, discount)
