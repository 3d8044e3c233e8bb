"""Where replay bytes live: blocks allocated on first write, and the ring of entries on top.

Replay memory must be honest (``nbytes`` is what is allocated, not what the capacity promises)
and must be handed back block by block while the pixel replay is re-encoded into latents, so
that the buffer never exists twice. ``BlockArray`` is that storage and nothing more.

``EntryRing`` is the layout both replays share: one entry per observation the agent saw, with
absolute (ever-growing) entry numbers and slot ``number % capacity``. An entry holds a payload
(the newest frame, or the latents) and one metadata record for the transition that *starts* at
it (action, reward, discount, and whether a transition starts there at all); the next
observation of entry ``i`` is entry ``i + 1``, so nothing is stored twice. Which entries may be
sampled is the ring's business (``_valid``: a transition starts there, its n-step window is
complete, and for pixels its frame stack is still stored); which of those a batch holds is its
sampler's (``samplers.py``: uniform or prioritized, told of every change). The ring sums
multi-step returns along the entries that follow (Rainbow's n-step targets, ``n_step`` and
``gamma`` fixed at construction). Discrete actions are stored as their index in a one-element
action (exact in float32).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ReplayError
from .samplers import Sampler, make_sampler, upgrade_state

_LOOP_MAX = 2048  # gathers up to this size copy item by item: one copy, no sort


class BlockArray:
    """``capacity`` items of one shape and dtype, in lazily allocated blocks of ``block_items``."""

    def __init__(self, capacity: int, item_shape: tuple[int, ...], dtype: np.dtype | type | str,
                 block_items: int):
        if capacity < 1 or block_items < 1:
            raise ValueError(f"capacity ({capacity}) and block_items ({block_items}) must be >= 1")
        self.capacity = int(capacity)
        self.item_shape = tuple(int(d) for d in item_shape)
        self.dtype = np.dtype(dtype)
        self.block_items = int(min(block_items, capacity))
        self.num_blocks = math.ceil(self.capacity / self.block_items)
        self._blocks: list[np.ndarray | None] = [None] * self.num_blocks
        self._nbytes = 0

    @property
    def item_nbytes(self) -> int:
        """Bytes of one item, exactly as stored (records are packed, no padding)."""
        return math.prod(self.item_shape) * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes allocated right now (not the capacity)."""
        return self._nbytes

    def allocated(self, block: int) -> bool:
        return self._blocks[block] is not None

    def _block_len(self, block: int) -> int:
        return min(self.block_items, self.capacity - block * self.block_items)

    def _writable(self, block: int) -> np.ndarray:
        array = self._blocks[block]
        if array is None:
            array = np.zeros((self._block_len(block), *self.item_shape), self.dtype)
            self._blocks[block] = array
            self._nbytes += array.nbytes
        return array

    def _readable(self, block: int) -> np.ndarray:
        array = self._blocks[block]
        if array is None:
            raise IndexError(f"block {block} was never written or has been released")
        return array

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < self.capacity:
            raise IndexError(f"index {index} out of range [0, {self.capacity})")
        return divmod(index, self.block_items)

    def _split(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if indices.size and (indices.min() < 0 or indices.max() >= self.capacity):
            raise IndexError(f"index out of range [0, {self.capacity})")
        return np.divmod(indices, self.block_items)

    def get(self, indices: np.ndarray | int) -> np.ndarray:
        """Copies of the items at ``indices`` (an int, or an int array of any shape)."""
        if isinstance(indices, (int, np.integer)):  # one item: plain integer arithmetic
            block, offset = self._locate(int(indices))
            return np.array(self._readable(block)[offset])
        index = np.asarray(indices, dtype=np.int64)
        flat = index.reshape(-1)
        out = np.empty((flat.size, *self.item_shape), self.dtype)
        blocks, offsets = self._split(flat)
        if flat.size and blocks.min() == blocks.max():  # one block: a single take
            np.take(self._readable(int(blocks[0])), offsets, axis=0, out=out)
        elif flat.size <= _LOOP_MAX:
            self._gather_items(blocks, offsets, out)
        elif flat.size:
            self._gather_grouped(blocks, offsets, out)
        return out.reshape(*index.shape, *self.item_shape)

    def _gather_items(self, blocks: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
        """A batch: one copy per item beats sorting by block (one copy in, one out)."""
        block_list, offset_list = blocks.tolist(), offsets.tolist()
        for b in set(block_list):
            self._readable(b)
        arrays = self._blocks
        for i, (b, o) in enumerate(zip(block_list, offset_list)):
            out[i] = arrays[b][o]

    def _gather_grouped(self, blocks: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
        """Bulk reads (conversion, state): one vectorised take per block."""
        order = np.argsort(blocks, kind="stable")
        ordered = blocks[order]
        cuts = (np.flatnonzero(ordered[1:] != ordered[:-1]) + 1).tolist()
        for lo, hi in zip([0, *cuts], [*cuts, blocks.size]):
            rows = order[lo:hi]
            out[rows] = self._readable(int(ordered[lo]))[offsets[rows]]

    def set(self, indices: np.ndarray | int, values: Any) -> None:
        """Write ``values`` (broadcast to the items) at ``indices``, allocating blocks as needed."""
        if isinstance(indices, (int, np.integer)):
            block, offset = self._locate(int(indices))
            self._writable(block)[offset] = values
            return
        index = np.asarray(indices, dtype=np.int64)
        flat = index.reshape(-1)
        values = np.broadcast_to(np.asarray(values, dtype=self.dtype),
                                 (*index.shape, *self.item_shape)).reshape(flat.size,
                                                                           *self.item_shape)
        blocks, offsets = self._split(flat)
        for b in np.unique(blocks).tolist():
            rows = blocks == b
            self._writable(b)[offsets[rows]] = values[rows]

    def release(self, block: int) -> None:
        """Hand a block's memory back; reading it afterwards is an error, writing reallocates."""
        array = self._blocks[block]
        if array is not None:
            self._nbytes -= array.nbytes
            self._blocks[block] = None

    def state_dict(self) -> dict[str, np.ndarray]:
        """Allocated blocks only, as views (``"<block>"``; records as ``"<block>.<field>"``)."""
        state: dict[str, np.ndarray] = {}
        for b, array in enumerate(self._blocks):
            if array is None:
                continue
            if self.dtype.names:  # records do not go into safetensors: one array per field
                state.update({f"{b}.{name}": array[name] for name in self.dtype.names})
            else:
                state[str(b)] = array
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Replace the contents with ``state`` (copied), as made by ``state_dict``."""
        for b in range(self.num_blocks):
            self.release(b)
        for key, value in state.items():
            block, _, field = key.partition(".")
            if not block.isdigit() or int(block) >= self.num_blocks or bool(field) != bool(
                    self.dtype.names) or (field and field not in (self.dtype.names or ())):
                raise ValueError(f"state key {key!r} does not fit this array")
            target = self._writable(int(block))
            target = target[field] if field else target
            value = np.asarray(value)
            if value.shape != target.shape:
                raise ValueError(f"state {key!r} has shape {value.shape}, expected {target.shape}")
            target[...] = value
        fields = len(self.dtype.names or ()) or 1
        if any(n != fields for n in Counter(key.partition(".")[0] for key in state).values()):
            raise ValueError("state holds some but not all fields of a block")


# ---------------------------------------------------------------------------------- the ring
DEFAULT_BLOCK_BYTES = 32 * 2**20  # about 32 MB a block: fine-grained release, few blocks


def default_block_items(item_bytes: int) -> int:
    """Items per block for blocks of about ``DEFAULT_BLOCK_BYTES``."""
    return max(1, DEFAULT_BLOCK_BYTES // max(1, item_bytes))


def meta_dtype(action_dim: int, episode_first: bool) -> np.dtype:
    """One packed record per entry: one gather fetches everything a sampled transition needs."""
    fields: list[tuple[Any, ...]] = [("action", np.float32, (action_dim,)),
                                     ("reward", np.float32), ("discount", np.float32),
                                     ("starts", np.bool_)]
    if episode_first:  # pixel replays rebuild frame stacks, clamped at the episode's first entry
        fields.append(("episode_first", np.int64))
    return np.dtype(fields)


class EntryRing:
    """Entries with absolute numbers in a ring of ``capacity`` slots; subclasses add meaning."""

    _payload_name = "payload"  # its name in state dicts: "frames" or "latents"
    _edge = 0  # how many of the oldest entries may start a transition that cannot be sampled

    def __init__(self, capacity: int, action_dim: int, payload_shape: tuple[int, ...],
                 payload_dtype: np.dtype | type | str, block_items: int, episode_first: bool,
                 n_step: int = 1, gamma: float = 1.0,
                 sampler: Sampler | Mapping[str, Any] | None = None):
        if capacity < 1:
            raise ReplayError(f"a replay capacity of {capacity} entries cannot hold anything: "
                              f"use a capacity (or memory budget) of at least one entry")
        if action_dim < 1 or block_items < 1:
            raise ValueError(f"action_dim ({action_dim}) and block_items ({block_items}) "
                             f"must be >= 1")
        if n_step < 1 or not 0 <= gamma <= 1:
            raise ValueError(f"n_step must be >= 1 and gamma in [0, 1], got {n_step}, {gamma}")
        self.capacity, self.action_dim = int(capacity), int(action_dim)
        self.n_step, self.gamma = int(n_step), float(gamma)
        self.payload = BlockArray(capacity, payload_shape, payload_dtype, block_items)
        self.meta = BlockArray(capacity, (), meta_dtype(action_dim, episode_first), block_items)
        self.block_items = self.payload.block_items
        self.sampler = make_sampler(sampler)
        self.sampler.attach(self.capacity)
        self.total = 0  # entries ever written: the next entry's number
        self.open = False  # whether an episode is under way (add_step may follow)
        self.transitions = 0  # entries in the ring where a transition starts
        self._pending = 0  # entries from here to the newest wait for their n-step window
        self._size: int | None = None  # len(self), until the next write
        self._retired: str | None = None

    def _base_args(self) -> dict[str, Any]:
        """The ring's part of ``init_args``."""
        return {"n_step": self.n_step, "gamma": self.gamma, "sampler": self.sampler.spec()}

    @property
    def bytes_per_entry(self) -> int:
        """Real bytes of one entry: payload plus its metadata record (not the sampler's
        ``slot_bytes``)."""
        return self.payload.item_nbytes + self.meta.item_nbytes

    @property
    def nbytes(self) -> int:
        """Bytes allocated right now (the sampler's state included)."""
        return self.payload.nbytes + self.meta.nbytes + self.sampler.nbytes

    @property
    def oldest(self) -> int:
        """Number of the oldest entry still in the ring."""
        return max(0, self.total - self.capacity)

    def _check_usable(self) -> None:
        if self._retired is not None:
            raise RuntimeError(self._retired)

    # ------------------------------------------------------------------------------ writing
    def _append(self, item: np.ndarray, **fields: Any) -> None:
        """Write a new newest entry (no transition yet) over the oldest slot."""
        slot = self.total % self.capacity
        if self.total >= self.capacity and self.meta.get(slot)["starts"]:
            self.transitions -= 1  # the evicted entry's transition is gone
        record = np.zeros((), self.meta.dtype)
        record["discount"] = 1.0
        for name, value in fields.items():
            record[name] = value
        self.payload.set(slot, item)
        self.meta.set(slot, record)
        self.total += 1
        self._size = None
        self.sampler.remove(slot)

    def _close_newest(self, action: Any, reward: float, terminated: bool) -> None:
        """Record the transition that starts at the newest entry (its next entry comes next)."""
        if not self.open:
            raise RuntimeError("add_step needs an episode under way: call add_reset first "
                               "(also after a terminated step)")
        slot = (self.total - 1) % self.capacity
        record = self.meta.get(slot)
        record["action"] = np.asarray(action, dtype=np.float32).reshape(self.action_dim)
        record["reward"] = reward
        record["discount"] = 0.0 if terminated else 1.0
        record["starts"] = True
        self.meta.set(slot, record)
        self.transitions += 1

    def _settle(self) -> None:
        """After a write: tell the sampler which transitions stopped being sampleable (a pixel
        stack whose first frames were just evicted) and which just became so (their n-step
        window is complete now)."""
        if self._edge and self.total > self.capacity:
            ids = np.arange(self.oldest, min(self.total, self.oldest + self._edge),
                            dtype=np.int64)
            meta = self.meta.get(ids % self.capacity)
            self.sampler.remove(ids[~self._valid(ids, meta)] % self.capacity)
        before, self._pending = self._pending, self._first_pending()
        if self._pending > before:
            ids = np.arange(max(before, self.oldest), self._pending, dtype=np.int64)
            meta = self.meta.get(ids % self.capacity)
            self.sampler.extend(ids[self._valid(ids, meta)] % self.capacity)

    def _first_pending(self) -> int:
        """The first entry whose n-step window is cut by the newest entry while the episode goes
        on past it; entries from there to the newest are not sampleable yet.

        The reference data-efficient Rainbow never samples such a transition: its return would
        be short of rewards that are still to come. A window that ends by termination, or at
        the end of an episode that a reset closed (a time limit), is complete. The episode goes
        on past the newest entry while it is open, or (during conversion) while the newest entry
        already starts a transition whose next entry is yet to be appended.
        """
        newest = self.total - 1
        if newest < 1 or self.n_step == 1:
            return max(0, newest)
        if not self.open:
            record = self.meta.get(newest % self.capacity)
            if not (record["starts"] and record["discount"] > 0):
                return newest
        ids = np.arange(max(self.oldest, newest - self.n_step + 1), newest, dtype=np.int64)
        meta = self.meta.get(ids % self.capacity)
        breaks = np.flatnonzero(~(meta["starts"] & (meta["discount"] > 0)))
        return int(ids[0]) + (int(breaks[-1]) + 1 if breaks.size else 0) if ids.size else newest

    # ------------------------------------------------------------------------------ sampling
    def _stored(self, ids: np.ndarray, meta: np.ndarray) -> np.ndarray:
        """Which in-ring entries ``ids`` (with their records) start a transition whose data is
        all stored (subclasses add their own conditions: a pixel stack's frames)."""
        return meta["starts"]

    def _valid(self, ids: np.ndarray, meta: np.ndarray) -> np.ndarray:
        """Which in-ring entries start a sampleable transition: stored, and its n-step window
        complete."""
        return self._stored(ids, meta) & (ids < self._pending)

    def sampleable(self, ids: np.ndarray) -> np.ndarray:
        """Which in-ring entries ``ids`` start a transition that may be sampled now."""
        ids = np.asarray(ids, np.int64)
        return self._valid(ids, self.meta.get(ids % self.capacity))

    def candidates(self) -> tuple[int, int]:
        """``[low, high)``: the entry numbers among which the sampleable ones lie."""
        return self.oldest, self._pending

    def __len__(self) -> int:
        """Transitions that can be sampled now (the loop asks at every step: kept until the
        next write)."""
        self._check_usable()
        if self._size is None:
            edge = min(self.total, self.oldest + self._edge)  # the only entries that can lack
            ids = np.concatenate([np.arange(self.oldest, edge, dtype=np.int64),  # frames...
                                  np.arange(max(edge, self._pending), self.total,  # ...or wait
                                            dtype=np.int64)])
            meta = self.meta.get(ids % self.capacity)
            self._size = self.transitions - int((meta["starts"] & ~self._valid(ids, meta)).sum())
        return self._size

    @property
    def waiting(self) -> int:
        """Transitions held back until their n-step window is complete (sampleable later)."""
        self._check_usable()
        ids = np.arange(self._pending, self.total, dtype=np.int64)
        return int(self._stored(ids, self.meta.get(ids % self.capacity)).sum())

    def _draw(self, batch_size: int, rng: np.random.Generator, step: int | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The sampler's entries, their records and importance weights (None when uniform)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(self) == 0:
            raise RuntimeError("the replay holds no sampleable transition yet: add steps first")
        ids, weights = self.sampler.sample(self, batch_size, rng, step)
        return ids, self.meta.get(ids % self.capacity), weights

    def update_priorities(self, ids: np.ndarray, losses: np.ndarray) -> None:
        """Hand each sampled transition's loss to the sampler (a prioritized one sets its
        priority from it, a uniform one ignores it); entries no longer in the ring are skipped."""
        ids, losses = np.asarray(ids, np.int64), np.asarray(losses, np.float64)
        if ids.shape != losses.shape:
            raise ValueError(f"{ids.size} ids but losses of shape {losses.shape}")
        keep = (ids >= self.oldest) & (ids < self.total)
        self.sampler.update(ids[keep] % self.capacity, losses[keep])

    def _returns(self, ids: np.ndarray, meta: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reward, discount, next entry) of the ``n_step`` transitions from sampleable ``ids``.

        The return sums ``gamma**k * r_k`` over the steps that stay in the episode; at the end of
        an episode closed by a reset (a time limit) it is truncated to the m steps left, as in
        the reference Rainbow code. ``discount`` is the factor on the value of entry
        ``ids + m``: ``gamma**m``, or 0 if the episode terminated within those steps. A sampled
        window is never cut by the newest entry of an episode under way (``_first_pending``).
        With ``n_step=1, gamma=1`` these are the stored reward, 0/1 discount and next entry.
        """
        n_step, gamma = self.n_step, self.gamma
        starts, goes_on, reward = meta["starts"][:, None], meta["discount"][:, None] > 0, \
            meta["reward"][:, None]
        if n_step > 1:  # later steps, clamped at the newest entry (which starts no transition)
            later = self.meta.get(np.minimum(ids[:, None] + np.arange(1, n_step), self.total - 1)
                                  % self.capacity)
            starts = np.concatenate([starts, later["starts"]], axis=1)
            goes_on = np.concatenate([goes_on, later["discount"] > 0], axis=1)
            reward = np.concatenate([reward, later["reward"]], axis=1)
        chain = starts & goes_on  # the episode goes on after step k
        counted = starts & np.cumprod(np.concatenate(
            [np.ones_like(chain[:, :1]), chain[:, :-1]], axis=1), axis=1, dtype=bool)
        steps = counted.sum(axis=1)
        powers = gamma ** np.arange(n_step, dtype=np.float64)
        returns = (reward * counted * powers).sum(axis=1, dtype=np.float64).astype(np.float32)
        ended = ~goes_on[np.arange(ids.size), steps - 1]
        discount = np.where(ended, 0.0, float(gamma) ** steps).astype(np.float32)
        return returns, discount, ids + steps

    @staticmethod
    def _actions(meta: np.ndarray) -> np.ndarray:
        """Contiguous actions (record fields are strided: torch refuses them)."""
        return np.ascontiguousarray(meta["action"])

    # ------------------------------------------------------------------------------ memory
    def release_block(self, block: int) -> None:
        """Free block ``block`` of every array (used while converting)."""
        self.payload.release(block)
        self.meta.release(block)

    def retire(self, reason: str) -> None:
        """Free everything; any later use raises ``RuntimeError(reason)``."""
        for block in range(self.payload.num_blocks):
            self.release_block(block)
        self.sampler.release()
        self._retired = reason

    # ------------------------------------------------------------------------------ state
    def init_args(self) -> dict[str, Any]:
        """Constructor arguments (plain values) that rebuild an empty replay of this layout."""
        raise NotImplementedError

    def _counters(self) -> dict[str, int]:
        return {"total": self.total, "open": int(self.open)}

    def _load_counters(self, counters: dict[str, int]) -> None:
        self.total, self.open = counters["total"], bool(counters["open"])

    def state_dict(self) -> dict[str, np.ndarray]:
        """Counters (0-d int64), allocated blocks (views) and the sampler's state
        (``sampler.*``): numpy only, no pickles, no RNG."""
        self._check_usable()
        state = {k: np.array(v, dtype=np.int64) for k, v in self._counters().items()}
        state.update({f"sampler.{k}": v for k, v in self.sampler.state_dict().items()})
        state.update({f"{self._payload_name}.{k}": v for k, v in self.payload.state_dict().items()})
        state.update({f"meta.{k}": v for k, v in self.meta.state_dict().items()})
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` returned (arrays are copied); states written before
        samplers existed (top-level priorities) load too."""
        self._check_usable()
        state = upgrade_state(state)
        # 0-d, or 1-d of one item: np.ascontiguousarray (as in checkpoint code) adds a dimension
        counters = {k: int(np.asarray(state[k]).item()) for k in self._counters()}
        arrays: dict[str, dict[str, np.ndarray]] = {self._payload_name: {}, "meta": {},
                                                    "sampler": {}}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            if head in arrays:
                arrays[head][rest] = value
            elif key not in counters:
                raise ValueError(f"state key {key!r} does not belong to a {type(self).__name__}")
        self.sampler.load_state_dict(arrays["sampler"])
        self.payload.load_state_dict(arrays[self._payload_name])
        self.meta.load_state_dict(arrays["meta"])
        self._load_counters(counters)
        self._size = None
        self.transitions = sum(int(v.sum()) for k, v in self.meta.state_dict().items()
                               if k.endswith(".starts"))
        self._pending = self._first_pending()
        # an old state gave transitions their priority before their window was complete
        waiting = np.arange(self._pending, self.total, dtype=np.int64)
        self.sampler.remove(waiting % self.capacity)
