"""What a run tells its caller while it goes on (``Trainer.events()``), and the schedule that
evaluations, checkpoints and snapshots follow. A caller acts on events (``pretrain`` publishes
each ``SnapshotSaved``: ``zoo.publishing.publish_as_saved``) without knowing the loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union


@dataclass(frozen=True)
class Frozen:
    """LeVER's switch happened; ``row`` is its metrics row."""

    row: dict[str, Any]


@dataclass(frozen=True)
class Evaluated:
    env_steps: int
    mean: float
    std: float


@dataclass(frozen=True)
class SnapshotSaved:
    """A snapshot (weights + the evaluation just made) is on disk, and a checkpoint holds it."""

    path: Path
    env_steps: int


Event = Union[Frozen, Evaluated, SnapshotSaved]


def next_due(due: int, every: int, now: int) -> int:
    """The first multiple-of-``every`` step after ``now`` on the schedule that ``due`` is on."""
    while due <= now:
        due += every
    return due
