"""The agents (SAC+CURL and DrQ on DeepMind Control, data-efficient Rainbow on Atari), all with
LeVER; which exist, and their settings, is ``registry.AGENTS``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch

from ..registry import agent_entry
from .base import Agent, UpdateResult

if TYPE_CHECKING:  # loading a zoo encoder must not import gymnasium
    import gymnasium as gym


def make_agent(cfg: Any, obs_shape: tuple[int, int, int], action_space: "gym.Space",
               device: torch.device | str = "cpu") -> Agent:
    """The agent ``cfg.algorithm`` names, sized for the task's observations and actions."""
    from ..envs import action_size

    return agent_class(cfg.algorithm)(cfg, obs_shape, action_size(action_space), device)


def agent_class(algorithm: str) -> type[Agent]:
    """The class that implements ``algorithm`` (imported on first use)."""
    return agent_entry(algorithm).agent_class()


def agent_for_task(cfg: Any, device: torch.device | str = "cpu"
                   ) -> tuple[Agent, tuple[int, ...], "gym.Space"]:
    """(untrained agent, observation shape, action space) for ``cfg``'s task, sized from its
    evaluation environment (made, read and closed): for tools that act or count without
    training (flops, eval)."""
    from ..envs import evaluation_env

    env = evaluation_env(cfg)
    try:
        shape = env.observation_space.shape
        assert shape is not None  # a Box of stacked frames [S*C, H, W]
        obs_shape, space = cast("tuple[int, int, int]", tuple(shape)), env.action_space
    finally:
        env.close()
    return make_agent(cfg, obs_shape, space, device), obs_shape, space


__all__ = ["Agent", "UpdateResult", "agent_class", "agent_for_task", "make_agent"]
