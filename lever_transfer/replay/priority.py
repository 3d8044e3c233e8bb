"""Priorities for prioritized replay (Schaul et al. 2016), as data-efficient Rainbow can use it
(``samplers.PrioritizedSampler`` owns one tree and the schedule around it).

A sum tree over the ring's slots: setting priorities and drawing slots in proportion to them
are vectorised over a batch, and parents are always recomputed from their children (no running
deltas that drift). Drawing never loops forever: a draw that lands on a zero priority (possible
only through rounding) is redrawn a few times, then taken from the listed positive slots (the
reference Rainbow sum tree had index errors and infinite loops exactly here).
"""

from __future__ import annotations

import numpy as np

TREE_BYTES_PER_SLOT = 32  # at most: 2 nodes per leaf, leaves rounded up to a power of two


class SumTree:
    """Non-negative priorities of ``capacity`` slots; node 1 is the root, leaves follow."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.leaves = 1 << (self.capacity - 1).bit_length()  # a power of two >= capacity
        self.depth = self.leaves.bit_length() - 1
        self.tree = np.zeros(2 * self.leaves, np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    @property
    def nbytes(self) -> int:
        return self.tree.nbytes

    def get(self, slots: np.ndarray) -> np.ndarray:
        return self.tree[self.leaves + np.asarray(slots, np.int64)]

    def set(self, slots: np.ndarray | int, priorities: np.ndarray | float) -> None:
        """Set leaves (the last value wins for a repeated slot) and recompute their ancestors."""
        slots = np.atleast_1d(np.asarray(slots, np.int64))
        values = np.broadcast_to(np.asarray(priorities, np.float64), slots.shape)
        if slots.size == 0:
            return
        if slots.min() < 0 or slots.max() >= self.capacity:
            raise IndexError(f"slot out of range [0, {self.capacity})")
        if not np.isfinite(values).all() or (values < 0).any():
            raise ValueError("priorities must be finite and non-negative")
        self.tree[self.leaves + slots] = values  # numpy assigns repeated indices in order
        nodes = np.unique((self.leaves + slots) // 2)
        while nodes[0] >= 1:  # up to the root (node 1); node 0 is unused
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            nodes = np.unique(nodes // 2)

    def find(self, values: np.ndarray) -> np.ndarray:
        """Slots whose cumulative priority interval holds each value in ``[0, total)``."""
        values = np.asarray(values, np.float64).copy()
        nodes = np.ones(values.shape, np.int64)
        for _ in range(self.depth):
            left = 2 * nodes
            right = values >= self.tree[left]
            values -= np.where(right, self.tree[left], 0.0)
            nodes = left + right
        return np.minimum(nodes - self.leaves, self.capacity - 1)

    def draw(self, batch_size: int, rng: np.random.Generator, max_redraws: int = 8) -> np.ndarray:
        """``batch_size`` slots drawn in proportion to priority, one per equal stratum of the
        total (as Rainbow samples); only slots of positive priority are ever returned."""
        total = self.total
        if not total > 0:
            raise RuntimeError("no slot has a positive priority")
        bounds = np.arange(batch_size + 1, dtype=np.float64) * (total / batch_size)
        slots = self.find(rng.uniform(bounds[:-1], bounds[1:]))
        bad = np.flatnonzero(self.get(slots) <= 0)
        for _ in range(max_redraws):
            if bad.size == 0:
                return slots
            slots[bad] = self.find(rng.uniform(0, total, bad.size))
            bad = bad[self.get(slots[bad]) <= 0]
        positive = np.flatnonzero(self.tree[self.leaves:self.leaves + self.capacity] > 0)
        slots[bad] = positive[rng.integers(0, positive.size, bad.size)]
        return slots

    def leaves_array(self) -> np.ndarray:
        """The priorities of all slots (a view): what a checkpoint stores."""
        return self.tree[self.leaves:self.leaves + self.capacity]

    def load(self, priorities: np.ndarray) -> None:
        """Restore all slots from ``leaves_array()`` output and rebuild every parent."""
        priorities = np.asarray(priorities, np.float64)
        if priorities.shape != (self.capacity,):
            raise ValueError(f"priorities of shape {priorities.shape}, expected "
                             f"({self.capacity},)")
        self.tree[:] = 0.0
        self.tree[self.leaves:self.leaves + self.capacity] = priorities
        for level in range(self.depth - 1, -1, -1):
            nodes = np.arange(1 << level, 2 << level)
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
