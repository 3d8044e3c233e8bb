"""What a run keeps on disk besides its metrics: checkpoints to resume from, snapshots to
publish, and the encoder package written when LeVER freezes it.

A checkpoint holds everything a resume needs (counters, agent with optimizers, replay, RNG
states) and is written atomically (``checkpoint.py``); a snapshot holds the weights alone, with
the evaluation made at its step, and is never pruned. The loop (``train.py``) decides when.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .config import Config
from .events import Evaluated
from .metrics import MetricsLog
from .replay import LatentReplay, PixelReplay
from .replay.samplers import resume_init_args
from .run_dir import RunDir


@dataclass
class Counters:
    """Everything about progress that a resume must restore."""

    agent_steps: int = 0
    episodes: int = 0
    flops: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0  # older checkpoints lack it: their runs count CPU from the resume on
    next_eval: int = 0
    next_checkpoint: int = 0
    next_snapshot: int = 0


def save_checkpoint(run_dir: RunDir, counters: Counters, agent: Any,
                    replay: PixelReplay | LatentReplay, rng: np.random.Generator) -> Path:
    """A resumable checkpoint at ``counters.agent_steps`` (``counters`` with the wall and CPU
    seconds of the whole run so far)."""
    return run_dir.save_checkpoint(counters.agent_steps, {
        "counters": asdict(counters),
        "agent": agent.export_state(),
        "replay": {"kind": type(replay).__name__, "init": replay.init_args(),
                   "state": replay.state_dict()},
        "rng": {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}})


def restore_checkpoint(run_dir: RunDir, agent: Any, sampler: Any, discount: float,
                       rng: np.random.Generator
                       ) -> tuple[Counters, PixelReplay | LatentReplay] | None:
    """Load the run's latest checkpoint into ``agent`` and ``rng`` and return its counters and
    replay (None if there is none). The replay takes ``sampler``, which follows the config (a
    resumed run's length sets its beta schedule); the metrics log is cut back to the step."""
    path = run_dir.latest_checkpoint()
    if path is None:
        return None
    _, state = load_checkpoint(path)
    counters = Counters(**state["counters"])
    agent.import_state(state["agent"])
    saved = state["replay"]
    kind = {"PixelReplay": PixelReplay, "LatentReplay": LatentReplay}[saved["kind"]]
    # older checkpoints name a `prioritized` flag instead of a sampler, and no n_step, gamma
    replay = kind(**resume_init_args(saved["init"], sampler, agent.n_step, discount))
    replay.load_state_dict(saved["state"])
    rng.bit_generator.state = state["rng"]["numpy"]
    torch.set_rng_state(state["rng"]["torch"])
    MetricsLog.truncate(run_dir.metrics_path, counters.agent_steps)
    return counters, replay


def save_snapshot(run_dir: RunDir, counters: Counters, agent: Any, cfg: Config,
                  evaluated: Evaluated) -> Path:
    """The agent's weights (no optimizers, no replay) at this step, with the evaluation just
    made at it: what ``pretrain`` publishes as ``TASK-20k`` etc."""
    c = counters
    return run_dir.save_snapshot(c.agent_steps, {
        "weights": {k: v.detach().clone() for k, v in agent.state_dict().items()},
        "frozen_layers": agent.frozen_layers,
        "agent_steps": c.agent_steps, "env_steps": c.agent_steps * cfg.action_repeat,
        "flops": c.flops, "wall_s": round(c.wall_s, 1), "cpu_s": round(c.cpu_s, 1),
        "eval_return": evaluated.mean, "eval_return_std": evaluated.std,
        "eval_episodes": cfg.eval_episodes, "config": cfg.to_dict()})


def save_encoder(run_dir: RunDir, counters: Counters, agent: Any, cfg: Config,
                 action_size: int) -> Path:
    """The run's encoder (and heads) as a zoo package in the run's ``encoder`` folder."""
    from .zoo.card import model_card
    from .zoo.package import write_package
    from .zoo.publishing import package_config

    c = counters
    config = package_config(cfg, action_size, agent_steps=c.agent_steps, flops=c.flops,
                            eval_return=None, eval_return_std=None, wall_s=round(c.wall_s, 1),
                            cpu_s=round(c.cpu_s, 1), with_heads=True)
    config["frozen_layers"] = agent.frozen_layers
    tensors = agent.package_tensors(agent.state_dict(), agent.num_layers, with_heads=True)
    name = f"{cfg.task.removeprefix('atari:')}-run-encoder"
    return write_package(run_dir.encoder_dir, tensors, config,
                         lambda final: model_card(name, final))
