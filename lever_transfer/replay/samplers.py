"""Which stored transitions a batch holds: a uniform or a prioritized sampler, each owning its
state and schedule.

TorchRL's split: the replay (``EntryRing``) stores entries and says which of them may be sampled
now; a sampler only picks among those. The ring tells its sampler when a transition becomes
sampleable (``extend``) or stops being so (``remove``: evicted, its frame stack lost, or its
slot rewritten), and hands each batch's losses back (``update``). Nothing outside this module
asks which kind of sampler a replay has: a memory budget reads ``slot_bytes``, a checkpoint
``spec``/``state_dict``, and LeVER's conversion carries per-slot state with ``export_slots`` and
``import_slots``.

``PrioritizedSampler`` is Schaul et al.'s proportional prioritization as data-efficient Rainbow
uses it: a transition gets the highest priority seen when it becomes sampleable, draws are
proportional to priority, importance weights are ``(len * P(i)) ** -beta`` normalised by the
batch's largest, and beta is annealed linearly from ``beta_start`` at step ``anneal_from`` to 1
at step ``anneal_to``. Its sum tree keeps a positive priority exactly on the sampleable slots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from ..errors import ReplayError
from .priority import TREE_BYTES_PER_SLOT, SumTree


class Ring(Protocol):
    """What a sampler reads of its replay."""

    capacity: int

    @property
    def oldest(self) -> int: ...

    def __len__(self) -> int: ...

    def candidates(self) -> tuple[int, int]: ...

    def sampleable(self, ids: np.ndarray) -> np.ndarray: ...


class Sampler:
    """What a replay expects of its sampler; without per-slot state these are no-ops."""

    slot_bytes = 0  # bytes of state per replay slot: a memory budget counts them

    def __init__(self) -> None:
        self.capacity: int | None = None

    def attach(self, capacity: int) -> None:
        """Called once by the replay that owns this sampler: per-slot state is sized here."""
        if self.capacity is not None:
            raise ValueError("a sampler serves one replay: give each replay its own "
                             "(sampler.spawn() makes one with the same settings)")
        self.capacity = int(capacity)

    @property
    def nbytes(self) -> int:
        """Bytes this sampler holds (the replay's ``nbytes`` includes them)."""
        return 0

    def extend(self, slots: np.ndarray) -> None:
        """The transitions at ``slots`` became sampleable."""

    def remove(self, slots: np.ndarray | int) -> None:
        """The transitions at ``slots`` can no longer be sampled (or the slots were rewritten)."""

    def export_slots(self, slots: np.ndarray) -> np.ndarray | None:
        """Per-slot state to carry into another replay's sampler (None: there is none)."""
        return None

    def import_slots(self, slots: np.ndarray, values: np.ndarray) -> None:
        """Take per-slot state that ``export_slots`` gave, for the entries now at ``slots``."""

    def update(self, slots: np.ndarray, losses: np.ndarray) -> None:
        """Feedback from an update: each sampled transition's loss (unused when uniform)."""

    def sample(self, ring: Ring, batch_size: int, rng: np.random.Generator,
               step: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(entry numbers of sampleable transitions, importance weights or None) at agent
        ``step`` (None: after any schedule)."""
        raise NotImplementedError

    def spawn(self) -> Sampler:
        """A new, unattached sampler with these settings and global state (conversion)."""
        return type(self)(**self.init_args())

    def release(self) -> None:
        """Free per-slot state (the replay was retired)."""

    def init_args(self) -> dict[str, Any]:
        """Constructor arguments (plain values)."""
        return {}

    def spec(self) -> dict[str, Any]:
        """What rebuilds this sampler (``make_sampler``): its kind and settings."""
        return {"kind": type(self).__name__, **self.init_args()}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        if state:
            raise ValueError(f"a {type(self).__name__} has no state, got {sorted(state)}: "
                             f"prioritized and uniform replay states do not mix")


class UniformSampler(Sampler):
    """Every sampleable transition equally likely, as the reference LeVER code sampled: draws
    in the ring's candidate range, redraws the few that cannot be sampled; no state."""

    _max_redraws = 32  # rejection rounds before listing the sampleable entries once

    def sample(self, ring: Ring, batch_size: int, rng: np.random.Generator,
               step: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Uniform entry numbers among the sampleable ones, no weights."""
        low, high = ring.candidates()
        ids = rng.integers(low, high, batch_size, dtype=np.int64)
        bad = np.flatnonzero(~ring.sampleable(ids))
        for _ in range(self._max_redraws):
            if bad.size == 0:
                return ids, None
            ids[bad] = rng.integers(low, high, bad.size, dtype=np.int64)
            bad = bad[~ring.sampleable(ids[bad])]
        if bad.size:  # few sampleable entries: list them once
            valid = np.arange(low, high, dtype=np.int64)
            valid = valid[ring.sampleable(valid)]
            ids[bad] = valid[rng.integers(0, valid.size, bad.size)]
        return ids, None


class PrioritizedSampler(Sampler):
    """Proportional prioritization with importance weights; beta annealed by agent step."""

    slot_bytes = TREE_BYTES_PER_SLOT

    def __init__(self, exponent: float = 0.5, beta_start: float = 0.4, anneal_from: int = 0,
                 anneal_to: int = 1, epsilon: float = 1e-6):
        super().__init__()
        if not (0 <= beta_start <= 1 and exponent >= 0 and epsilon > 0):
            raise ValueError(f"need 0 <= beta_start <= 1, exponent >= 0 and epsilon > 0 "
                             f"(got {beta_start}, {exponent}, {epsilon})")
        self.exponent, self.beta_start, self.epsilon = float(exponent), float(beta_start), \
            float(epsilon)
        self.anneal_from, self.anneal_to = int(anneal_from), int(anneal_to)
        self.max_priority = 1.0  # what a new transition gets: it is drawn soon
        self.tree: SumTree | None = None

    def attach(self, capacity: int) -> None:
        super().attach(capacity)
        self.tree = SumTree(capacity)

    def _tree(self) -> SumTree:
        if self.tree is None:
            raise RuntimeError("this sampler is not attached to a replay (or was released)")
        return self.tree

    @property
    def nbytes(self) -> int:
        return self.tree.nbytes if self.tree is not None else 0

    def beta(self, step: int | None) -> float:
        """The importance exponent at agent ``step`` (None: annealing is over, 1)."""
        if step is None:
            return 1.0
        progress = (step - self.anneal_from) / max(1, self.anneal_to - self.anneal_from)
        return self.beta_start + (1 - self.beta_start) * min(1.0, max(0.0, progress))

    def priorities(self, slots: np.ndarray) -> np.ndarray:
        """Current priorities of ``slots`` (0: not sampleable)."""
        return self._tree().get(slots).copy()

    def extend(self, slots: np.ndarray) -> None:
        self._tree().set(slots, self.max_priority)

    def remove(self, slots: np.ndarray | int) -> None:
        self._tree().set(slots, 0.0)

    def export_slots(self, slots: np.ndarray) -> np.ndarray:
        return self.priorities(slots)

    def import_slots(self, slots: np.ndarray, values: np.ndarray) -> None:
        self._tree().set(slots, values)

    def update(self, slots: np.ndarray, losses: np.ndarray) -> None:
        """Priorities ``(|loss| + epsilon) ** exponent`` for slots still sampleable (a slot at 0
        was evicted or lost its stack since it was drawn: it stays at 0)."""
        tree = self._tree()
        slots, losses = np.asarray(slots, np.int64), np.asarray(losses, np.float64)
        keep = tree.get(slots) > 0
        priorities = (np.abs(losses[keep]) + self.epsilon) ** self.exponent
        tree.set(slots[keep], priorities)
        if priorities.size:
            self.max_priority = max(self.max_priority, float(priorities.max()))

    def sample(self, ring: Ring, batch_size: int, rng: np.random.Generator,
               step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draws proportional to priority, one per equal stratum of the total (as Rainbow), and
        their importance weights at ``step``'s beta."""
        tree = self._tree()
        slots = tree.draw(batch_size, rng)
        ids = ring.oldest + (slots - ring.oldest) % ring.capacity  # slot -> entry number
        weights = (len(ring) * tree.get(slots) / tree.total) ** -self.beta(step)
        return ids, (weights / weights.max()).astype(np.float32)

    def spawn(self) -> PrioritizedSampler:
        """Same settings and max priority, no tree yet."""
        sampler = PrioritizedSampler(**self.init_args())
        sampler.max_priority = self.max_priority
        return sampler

    def release(self) -> None:
        self.tree = None

    def init_args(self) -> dict[str, Any]:
        return {"exponent": self.exponent, "beta_start": self.beta_start,
                "anneal_from": self.anneal_from, "anneal_to": self.anneal_to,
                "epsilon": self.epsilon}

    def state_dict(self) -> dict[str, np.ndarray]:
        """All slots' priorities (a view) and the max priority."""
        return {"priorities": self._tree().leaves_array(),
                "max_priority": np.array(self.max_priority)}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        if set(state) != {"priorities", "max_priority"}:
            raise ValueError(f"a PrioritizedSampler's state holds priorities and max_priority, "
                             f"got {sorted(state)}: prioritized and uniform replay states do "
                             f"not mix")
        self._tree().load(state["priorities"])
        self.max_priority = float(np.asarray(state["max_priority"]).item())


SAMPLERS: dict[str, type[Sampler]] = {"UniformSampler": UniformSampler,
                                      "PrioritizedSampler": PrioritizedSampler}


def make_sampler(sampler: Sampler | Mapping[str, Any] | None) -> Sampler:
    """A sampler from itself, a ``spec()`` (checkpoints store plain values), or None (uniform)."""
    if sampler is None:
        return UniformSampler()
    if isinstance(sampler, Sampler):
        return sampler
    args = dict(sampler)
    kind = args.pop("kind", None)
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler {kind!r}: one of {', '.join(SAMPLERS)}")
    return SAMPLERS[kind](**args)


# ------------------------------------------------------------------------------ old checkpoints
def resume_init_args(init: Mapping[str, Any], sampler: Sampler, n_step: int, gamma: float
                     ) -> dict[str, Any]:
    """A checkpoint's replay ``init_args`` for ``kind(**init)``, with the run's ``sampler``.

    The sampler's settings come from the run (its beta schedule follows the run's length, which
    ``resume`` may change, as before samplers existed); its kind must be the checkpoint's.
    Checkpoints written before samplers existed say ``prioritized=...`` and have no n_step or
    gamma: those are ``n_step`` and ``gamma`` (the run's multi_step and discount, which resume
    cannot change).
    """
    init = dict(init)
    if "prioritized" in init:  # the layout before samplers
        saved = "PrioritizedSampler" if init.pop("prioritized") else "UniformSampler"
        init.setdefault("n_step", n_step)
        init.setdefault("gamma", gamma)
    else:
        saved = dict(init.get("sampler") or {}).get("kind", "UniformSampler")
    if saved != type(sampler).__name__:
        raise ReplayError(f"the checkpoint's replay used a {saved}, this run a "
                          f"{type(sampler).__name__}: resume with the run's own config")
    init["sampler"] = sampler
    return init


LEGACY_STATE_KEYS = {"priorities": "sampler.priorities", "max_priority": "sampler.max_priority"}


def upgrade_state(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A replay state with the old top-level priority keys moved under ``sampler.``."""
    return {LEGACY_STATE_KEYS.get(key, key): value for key, value in state.items()}
