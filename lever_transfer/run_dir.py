"""A run folder's layout, in one place: what ``train``, ``finetune`` and ``pretrain`` write and
what ``resume``, ``sweep``, ``eval``, ``report`` and ``zoo publish`` read back.

::

    RUN_DIR/config.yaml        the run's Config (``Config.to_yaml``), written atomically
    RUN_DIR/metrics.jsonl      one JSON row per episode, evaluation and freeze (``metrics``)
    RUN_DIR/checkpoints/       ckpt-<agent_step> folders and LATEST: what ``resume`` continues
    RUN_DIR/snapshots/         weights + evaluation every snapshot_every steps (never pruned)
    RUN_DIR/packages/          those snapshots as zoo packages, before they are published
    RUN_DIR/encoder/           the encoder (and heads) as a zoo package, written at Tf
    RUN_DIR/tensorboard/       TensorBoard events, with ``tensorboard: true``

No other module spells these names: they ask a ``RunDir``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from .checkpoint import checkpoint_step, latest_checkpoint, list_checkpoints, save_checkpoint
from .config import Config, load_config
from .errors import ConfigError, LeverError
from .files import write_atomic
from .metrics import read_metrics

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class RunDir:
    """One run folder; ``RunDir(path)`` takes a path or another ``RunDir``."""

    path: Path

    if TYPE_CHECKING:  # the generated __init__ takes any path; __post_init__ makes it a Path
        def __init__(self, path: str | os.PathLike[str]) -> None: ...

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __str__(self) -> str:  # messages name the folder as the user gave it
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def snapshots_dir(self) -> Path:
        return self.path / "snapshots"

    @property
    def packages_dir(self) -> Path:
        return self.path / "packages"

    @property
    def encoder_dir(self) -> Path:
        return self.path / "encoder"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    # ------------------------------------------------------------------ config
    def has_config(self) -> bool:
        """Whether a run was ever started here (its config is written first)."""
        return self.config_path.is_file()

    def read_config(self, overrides: Mapping[str, object] | None = None) -> Config:
        """The run's Config (with ``--set`` style ``overrides``, checked like train's), or a
        one-line error naming the folder when it is missing or is not a run config."""
        if not self.has_config():
            raise LeverError(f"{self.path} is not a run directory (no {CONFIG}); start one with "
                             f"'lever-transfer train'")
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{self.config_path} is not a run config "
                              f"({exc.__class__.__name__}); was it edited by hand?") from None
        cfg = Config.from_dict(data, origin=str(self.config_path))
        if overrides:  # typed as train's --set: the config (as this version writes it) as a recipe
            with tempfile.TemporaryDirectory() as tmp:
                recipe = Path(tmp) / CONFIG
                recipe.write_text(cfg.to_yaml(), encoding="utf-8")
                cfg = load_config(str(recipe), overrides)
        return cfg

    def write_config(self, cfg: Config) -> None:
        """Atomically: a crash leaves the old config or the new one, never half of one."""
        write_atomic(self.config_path, cfg.to_yaml().encode())

    # ------------------------------------------------------------------ checkpoints
    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.checkpoints_dir)

    def holds_run(self) -> bool:
        """Whether a run has checkpointed here (then it is resumed, never started over)."""
        return self.latest_checkpoint() is not None

    def latest_step(self) -> int | None:
        """The agent step of the latest checkpoint, or None before the first."""
        checkpoint = self.latest_checkpoint()
        return None if checkpoint is None else checkpoint_step(checkpoint)

    def save_checkpoint(self, step: int, state: dict[str, Any]) -> Path:
        """A resumable checkpoint; only the newest is kept."""
        return save_checkpoint(self.checkpoints_dir, step, state)

    def save_snapshot(self, step: int, state: dict[str, Any]) -> Path:
        """A snapshot for the zoo; snapshots are never pruned."""
        return save_checkpoint(self.snapshots_dir, step, state, keep=1 << 30)

    def snapshots(self) -> list[Path]:
        """Every complete snapshot, oldest first."""
        return list_checkpoints(self.snapshots_dir)

    # ------------------------------------------------------------------ metrics
    def metrics(self) -> list[dict[str, Any]]:
        """The metrics rows (none before the first); a torn last line is skipped."""
        return list(read_metrics(self.metrics_path)) if self.metrics_path.is_file() else []

