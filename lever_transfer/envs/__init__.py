"""Pixel environments: DeepMind Control and Atari behind gymnasium's API (no torch imported here).

Importing this package does not import dm_control: the OpenGL backend must be chosen first
(`select_gl_backend`), and that happens when the first task is parsed or environment made.
`training_env` and `evaluation_env` pick the suite from the task name: DMC renders in a worker
process (rendering overlaps the update), Atari steps in place (an ALE step costs about 0.5 ms).
"""

from __future__ import annotations

from typing import Any

from ..config import is_atari_task
from .atari import AtariEnv, list_games, parse_game
from .dmc import DMCEnv, EnvWorker, list_tasks, make_env, parse_task
from .rendering import select_gl_backend


def action_size(space: Any) -> int:
    """What an agent's heads output for this action space: the number of discrete actions, or
    the dimension of a continuous action."""
    return int(space.n) if hasattr(space, "n") else int(space.shape[0])


def check_task(task: str) -> str:
    """The task's canonical name, or a one-line ``TaskError`` with close matches."""
    if is_atari_task(task):
        return f"atari:{parse_game(task)}"
    parse_task(task)
    return task


def training_env(cfg: Any) -> EnvWorker | AtariEnv:
    """The environment a run trains on (`cfg`: a `Config`); Atari loses an episode per life."""
    if is_atari_task(cfg.task):
        return AtariEnv(cfg.task, episodic_life=True, seed=cfg.seed)
    return EnvWorker(cfg.task, action_repeat=cfg.action_repeat, frame_stack=cfg.frame_stack,
                     render_size=cfg.render_size, render_quality=cfg.render_quality,
                     seed=cfg.seed)


def evaluation_env(cfg: Any) -> DMCEnv | AtariEnv:
    """The environment a run evaluates on, in this process; Atari plays whole games."""
    if is_atari_task(cfg.task):
        return AtariEnv(cfg.task, episodic_life=False, seed=cfg.seed)
    return DMCEnv(cfg.task, action_repeat=cfg.action_repeat, frame_stack=cfg.frame_stack,
                  render_size=cfg.render_size, render_quality=cfg.render_quality)


__all__ = ["AtariEnv", "DMCEnv", "EnvWorker", "action_size", "check_task", "evaluation_env",
           "list_games", "list_tasks", "make_env", "parse_game", "parse_task", "select_gl_backend",
           "training_env"]
