"""The run's metrics file: one JSON object per line, appended and flushed row by row.

Columns every row has: env_steps, agent_steps, flops (cumulative, appendix B accounting),
episode_return or eval_return, update_ms, replay_bytes, replay_capacity, replay_size, phase,
wall_s. JSONL survives a crash (at most the line being written is lost) and is read back
with one ``json.loads`` per line.

With ``tensorboard`` (the ``tensorboard: true`` recipe value; needs the optional tensorboard
package) every numeric column is also a TensorBoard scalar of the same name, at x = env_steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from .errors import LeverError
from .files import write_atomic

NOT_SCALARS = ("env_steps", "agent_steps", "episode", "interrupted", "latent_replay")


class MetricsLog:
    def __init__(self, path: Path, tensorboard: Path | None = None):
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._board = None
        if tensorboard is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise LeverError("tensorboard logging needs the tensorboard package: pip "
                                 "install tensorboard, or set tensorboard=false") from None
            self._board = SummaryWriter(str(tensorboard))
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row, sort_keys=True) + "\n")
        self._file.flush()
        if self._board is not None:
            for key, value in row.items():
                if key not in NOT_SCALARS and isinstance(value, (int, float)) \
                        and not isinstance(value, bool):
                    self._board.add_scalar(key, value, row["env_steps"])

    def close(self) -> None:
        self._file.close()
        if self._board is not None:
            self._board.close()

    @staticmethod
    def truncate(path: Path, max_agent_steps: int) -> None:
        """Drop rows logged after a checkpoint, so a resumed run does not log them twice."""
        if not path.exists():
            return
        kept = [json.dumps(r, sort_keys=True) + "\n" for r in read_metrics(path)
                if r.get("agent_steps", 0) <= max_agent_steps]
        write_atomic(path, "".join(kept).encode())


def read_metrics(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a metrics file; a torn last line (crash mid-write) is skipped."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
