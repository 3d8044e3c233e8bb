"""The entry ring both replays share: one entry per observation, transitions between neighbours.

An entry holds one observation's payload (the newest frame, or the latents) and the transition
that *starts* at it: action, reward, discount (0 when the episode terminated) and a flag saying
whether a transition starts here (not at an episode's last observation, nor at the newest entry
until its step arrives). The next observation of the transition at entry ``i`` is entry ``i + 1``,
so nothing is stored twice. Entries have absolute, ever-growing ids; the slot is ``id % capacity``,
and ``episode_first[i]`` remembers where entry ``i``'s episode began (for frame stacks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ReplayError
from .storage import BlockArray

DEFAULT_BLOCK_BYTES = 32 * 2**20  # blocks of about 32 MB: fine-grained release, few blocks


class EntryRing:
    """Bookkeeping of entries and transitions; subclasses own the payload arrays."""

    def __init__(self, capacity: int, action_dim: int, block_items: int):
        if capacity < 1:
            raise ReplayError(f"a replay needs room for at least 1 entry, got capacity {capacity}")
        self.capacity, self.action_dim, self.block_items = int(capacity), int(action_dim), block_items
        self.action = BlockArray(capacity, (action_dim,), np.float32, block_items)
        self.reward = BlockArray(capacity, (), np.float32, block_items)
        self.discount = BlockArray(capacity, (), np.float32, block_items)
        self.starts = BlockArray(capacity, (), np.bool_, block_items)
        self.episode_first = BlockArray(capacity, (), np.int64, block_items)
        self.total = 0  # entries ever written; the next entry's id
        self.current_episode = -1  # id of the current episode's first entry
        self.in_episode = False  # whether add_step may follow (an episode is under way)
        self.transitions = 0  # transitions starting at entries still in the ring
        self.consumed = False

    # the payload arrays of a subclass, by name
    def payload(self) -> dict[str, BlockArray]:
        raise NotImplementedError

    def arrays(self) -> dict[str, BlockArray]:
        return {"action": self.action, "reward": self.reward, "discount": self.discount,
                "starts": self.starts, "episode_first": self.episode_first, **self.payload()}

    @property
    def bytes_per_entry(self) -> int:
        """Real bytes of one entry: payload and every metadata array."""
        return sum(a.item_nbytes for a in self.arrays().values())

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays().values())

    @property
    def oldest(self) -> int:
        return max(0, self.total - self.capacity)

    def _check_usable(self) -> None:
        if self.consumed:
            raise RuntimeError("this pixel replay was converted to latents and is empty now")

    # ------------------------------------------------------------------ writing
    def _append(self, payload: dict[str, Any], episode_first: int) -> int:
        """Write a new entry (no transition yet) over the oldest slot; returns its id."""
        self._check_usable()
        entry = self.total
        slot = entry % self.capacity
        if entry >= self.capacity and self.starts.get(np.array([slot]))[0]:
            self.transitions -= 1  # the evicted entry's transition is gone
        for name, value in payload.items():
            self.arrays()[name].set(slot, value)
        self.starts.set(slot, False)
        self.episode_first.set(slot, episode_first)
        self.action.set(slot, 0.0)  # filled in when the step from this entry arrives
        self.reward.set(slot, 0.0)
        self.discount.set(slot, 1.0)
        self.total += 1
        return entry

    def _start_episode(self, payload: dict[str, Any]) -> None:
        self.current_episode = self.total
        self.in_episode = True
        self._append(payload, self.current_episode)

    def _continue_episode(self, action: np.ndarray, reward: float, terminated: bool,
                          payload: dict[str, Any]) -> None:
        if not self.in_episode:
            raise RuntimeError("add_reset must come before add_step")
        slot = (self.total - 1) % self.capacity
        self.action.set(slot, np.asarray(action, dtype=np.float32).reshape(self.action_dim))
        self.reward.set(slot, reward)
        self.discount.set(slot, 0.0 if terminated else 1.0)
        self.starts.set(slot, True)
        self.transitions += 1
        self._append(payload, self.current_episode)
        self.in_episode = not terminated

    # ------------------------------------------------------------------ reading
    def _usable(self, ids: np.ndarray) -> np.ndarray:
        """Which entries may start a sampled transition (overridden where stacks matter)."""
        slots = ids % self.capacity
        return (ids >= self.oldest) & (ids < self.total - 1) & self.starts.get(slots)

    def __len__(self) -> int:
        """Transitions that can be sampled now."""
        if self.consumed:
            return 0
        edge = np.arange(self.oldest, min(self.total, self.oldest + self._edge()), dtype=np.int64)
        starts_at_edge = int(self.starts.get(edge % self.capacity).sum()) if edge.size else 0
        usable_at_edge = int(self._usable(edge).sum()) if edge.size else 0
        return self.transitions - starts_at_edge + usable_at_edge

    def _edge(self) -> int:
        """How many of the oldest entries may be unusable although a transition starts there."""
        return 0

    def sample_ids(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform ids of usable transitions: draw from the live range, redraw rejects."""
        self._check_usable()
        if len(self) == 0:
            raise ReplayError("the replay holds no transition to sample yet")
        low, high = self.oldest, self.total - 1
        ids = rng.integers(low, high, batch_size)
        for _ in range(64):
            bad = ~self._usable(ids)
            if not bad.any():
                return ids
            ids[bad] = rng.integers(low, high, int(bad.sum()))
        valid = np.arange(low, high, dtype=np.int64)  # pathological: few usable entries
        valid = valid[self._usable(valid)]
        return rng.choice(valid, batch_size)

    def transition(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        slots = ids % self.capacity
        return self.action.get(slots), self.reward.get(slots), self.discount.get(slots)

    # ------------------------------------------------------------------ state
    def init_args(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {"counters": np.array([self.total, self.current_episode, self.transitions,
                                       int(self.in_episode)], dtype=np.int64)}
        for name, array in self.arrays().items():
            state.update(array.state_dict(name))
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        total, current, transitions, in_episode = (int(v) for v in state["counters"])
        self.total, self.current_episode, self.transitions = total, current, transitions
        self.in_episode = bool(in_episode)
        for name, array in self.arrays().items():
            array.load_state_dict(state, name)
