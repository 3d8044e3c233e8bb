"""Latent replay: K augmented latents per observation, for N networks, float32 or float16.

A latent already summarises the frame stack, so entries need no stacking (and no episode start).
The K copies come from independent random crops (section 4.2: augmentation cannot happen after
encoding, so it happens before); sampling picks one copy per transition and uses it for the
observation, the next observation and every network, so critic and actor see one view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .samplers import Sampler
from .storage import EntryRing, default_block_items, meta_dtype

LATENT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


@dataclass(frozen=True)
class LatentBatch:
    latent: np.ndarray  # float32 [B, N, *feature]
    next_latent: np.ndarray  # float32 [B, N, *feature]
    action: np.ndarray  # float32 [B, A]
    reward: np.ndarray  # float32 [B]
    discount: np.ndarray  # float32 [B]: factor on next_latent's value (0: terminated)
    ids: np.ndarray | None = None  # int64 [B] entry numbers: update_priorities takes them
    weights: np.ndarray | None = None  # float32 [B] importance weights (prioritized sampler)


def latent_entry_bytes(latent_shape: tuple[int, ...], action_dim: int,
                       dtype: np.dtype | type | str = np.float32) -> int:
    """Real bytes of one entry of a ``LatentReplay`` of this layout, without building one."""
    return (int(np.prod(latent_shape)) * np.dtype(dtype).itemsize
            + meta_dtype(action_dim, episode_first=False).itemsize)


class LatentReplay(EntryRing):
    """A ring of ``capacity`` entries, each the [K, N, *feature] latents of one observation."""

    _payload_name = "latents"

    def __init__(self, capacity: int, latent_shape: tuple[int, ...], action_dim: int,
                 dtype: np.dtype | type | str = np.float32, block_items: int | None = None,
                 n_step: int = 1, gamma: float = 1.0,
                 sampler: Sampler | Mapping[str, Any] | None = None):
        self.latent_shape = tuple(int(d) for d in latent_shape)
        self.dtype = np.dtype(dtype)
        if len(self.latent_shape) < 2 or min(self.latent_shape) < 1:
            raise ValueError(f"latent_shape {latent_shape} must be (K, N, *feature)")
        if self.dtype not in LATENT_DTYPES:
            raise ValueError(f"latents are stored as float32 or float16, not {self.dtype}")
        item_bytes = int(np.prod(self.latent_shape)) * self.dtype.itemsize
        super().__init__(capacity, action_dim, self.latent_shape, self.dtype,
                         block_items or default_block_items(item_bytes), episode_first=False,
                         n_step=n_step, gamma=gamma, sampler=sampler)

    @property
    def latents(self):
        """The latent storage (a ``BlockArray``)."""
        return self.payload

    @property
    def augmentations(self) -> int:
        return self.latent_shape[0]

    def init_args(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "latent_shape": list(self.latent_shape),
                "action_dim": self.action_dim, "dtype": self.dtype.name,
                "block_items": self.block_items, **self._base_args()}

    # ------------------------------------------------------------------------------ writing
    def _checked(self, latents: np.ndarray, count: int | None = None) -> np.ndarray:
        latents = np.asarray(latents)
        shape = self.latent_shape if count is None else (count, *self.latent_shape)
        if latents.shape != shape:
            raise ValueError(f"latents of shape {latents.shape} do not fit this replay {shape}")
        return latents.astype(self.dtype, copy=False)

    def add_reset(self, latents: np.ndarray) -> None:
        """Start an episode at an observation's latents [K, N, *feature]."""
        self._check_usable()
        self._append(self._checked(latents))
        self.open = True
        self._settle()

    def add_step(self, action: np.ndarray, reward: float, terminated: bool,
                 next_latents: np.ndarray) -> None:
        """Record the step from the newest observation to the one of ``next_latents``."""
        self._check_usable()
        item = self._checked(next_latents)
        self._close_newest(action, reward, terminated)
        self._append(item)
        self.open = not terminated
        self._settle()

    def append_entries(self, latents: np.ndarray, action: np.ndarray, reward: np.ndarray,
                       discount: np.ndarray, starts: np.ndarray, open_after: bool,
                       carried: np.ndarray | None = None) -> None:
        """Append whole entries in order, with the transitions that start at them (conversion).

        ``starts[j]`` says entry j's transition leads to entry j + 1; ``open_after`` says whether
        the last entry's episode goes on, so that ``add_step`` chains onto it. ``carried`` is the
        entries' sampler state in the replay they come from (``Sampler.export_slots``: the
        priorities, 0 where a transition was not sampleable), taken as it is so that conversion
        keeps it; without it the sampler meets the transitions as new ones.
        """
        self._check_usable()
        n = len(starts)
        if n > self.capacity:
            raise ValueError(f"cannot append {n} entries to a replay of {self.capacity}")
        if n and (starts[-1] and open_after):
            raise ValueError("the last appended entry cannot both start a transition and be "
                             "the newest observation of an episode under way")
        ids = np.arange(self.total, self.total + n, dtype=np.int64)
        slots = ids % self.capacity
        evicted = slots[ids >= self.capacity]
        if evicted.size:
            self.transitions -= int(self.meta.get(evicted)["starts"].sum())
        records = np.zeros(n, self.meta.dtype)
        records["action"], records["reward"] = action, reward
        records["discount"], records["starts"] = discount, starts
        self.payload.set(slots, self._checked(latents, n))
        self.meta.set(slots, records)
        self.sampler.remove(slots)
        self.transitions += int(np.count_nonzero(starts))
        self.total += n
        self._size = None
        self.open = bool(open_after)
        if carried is None:
            self._settle()
        else:  # entries held back by a chunk boundary already carry their state: no _settle
            self.sampler.import_slots(slots, np.where(starts, carried, 0.0))
            self._pending = self._first_pending()

    # ------------------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, rng: np.random.Generator,
               step: int | None = None) -> LatentBatch:
        """Transitions (``n_step`` long, see ``EntryRing._returns``) as the sampler draws them
        at agent ``step`` (None: annealed), one augmentation copy each (shared by obs, next obs
        and every network)."""
        self._check_usable()
        ids, meta, weights = self._draw(batch_size, rng, step)
        reward, discount, next_ids = self._returns(ids, meta)
        copy = rng.integers(0, self.augmentations, batch_size)
        pair = self.latents.get(np.stack([ids, next_ids], axis=1) % self.capacity)  # [B, 2, K..]
        chosen = pair[np.arange(batch_size), :, copy]  # [B, 2, N, *feature]
        return LatentBatch(chosen[:, 0].astype(np.float32), chosen[:, 1].astype(np.float32),
                           self._actions(meta), reward, discount, ids, weights)
