"""Fixed-capacity arrays stored in blocks that are allocated on first write and can be released.

Replay memory must be honest (what it reports is what it holds) and must be handed back block by
block while the pixel replay is converted into latents, so that the buffer never exists twice.
A ``BlockArray`` is that storage and nothing more: where items go and which items are sampled
are the replays' business.
"""

from __future__ import annotations

import math

import numpy as np


class BlockArray:
    """``capacity`` items of one shape and dtype, in lazily allocated blocks of ``block_items``."""

    def __init__(self, capacity: int, item_shape: tuple[int, ...], dtype: np.dtype | type,
                 block_items: int):
        if capacity <= 0 or block_items <= 0:
            raise ValueError("capacity and block_items must be positive")
        self.capacity = int(capacity)
        self.item_shape = tuple(int(d) for d in item_shape)
        self.dtype = np.dtype(dtype)
        self.block_items = int(min(block_items, capacity))
        self.blocks: list[np.ndarray | None] = [None] * math.ceil(capacity / self.block_items)

    @property
    def item_nbytes(self) -> int:
        return int(np.prod(self.item_shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes allocated right now (not the capacity)."""
        return sum(block.nbytes for block in self.blocks if block is not None)

    def _block(self, b: int) -> np.ndarray:
        block = self.blocks[b]
        if block is None:
            items = min(self.block_items, self.capacity - b * self.block_items)
            block = self.blocks[b] = np.zeros((items, *self.item_shape), self.dtype)
        return block

    def set(self, index: int, value: np.ndarray | float) -> None:
        b, offset = divmod(int(index), self.block_items)
        self._block(b)[offset] = value

    def set_many(self, indices: np.ndarray, values: np.ndarray) -> None:
        blocks, offsets = np.divmod(np.asarray(indices, dtype=np.int64), self.block_items)
        for b in np.unique(blocks):
            mask = blocks == b
            self._block(int(b))[offsets[mask]] = values[mask]

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Items at ``indices`` (any shape of int array), as a new array."""
        indices = np.asarray(indices, dtype=np.int64)
        flat = indices.reshape(-1)
        out = np.empty((flat.size, *self.item_shape), self.dtype)
        blocks, offsets = np.divmod(flat, self.block_items)
        first = blocks[0] if flat.size else 0
        if flat.size and (blocks == first).all():  # the common case: one block
            np.take(self._checked(int(first)), offsets, axis=0, out=out)
        else:
            for b in np.unique(blocks):
                mask = blocks == b
                out[mask] = self._checked(int(b))[offsets[mask]]
        return out.reshape(*indices.shape, *self.item_shape)

    def _checked(self, b: int) -> np.ndarray:
        block = self.blocks[b]
        if block is None:
            raise IndexError(f"block {b} was never written or was released")
        return block

    def release(self, b: int) -> None:
        self.blocks[b] = None

    def state_dict(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.{b}": block for b, block in enumerate(self.blocks) if block is not None}

    def load_state_dict(self, state: dict[str, np.ndarray], prefix: str) -> None:
        self.blocks = [None] * len(self.blocks)
        for key, value in state.items():
            head, _, b = key.rpartition(".")
            if head != prefix:
                continue
            block = np.asarray(value, dtype=self.dtype)
            expected = min(self.block_items, self.capacity - int(b) * self.block_items)
            if block.shape != (expected, *self.item_shape):
                raise ValueError(f"{key}: shape {block.shape} does not fit this replay")
            self.blocks[int(b)] = np.array(block)
