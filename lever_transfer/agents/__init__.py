"""The agents: SAC+CURL on DeepMind Control, data-efficient Rainbow on Atari, both with LeVER."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .base import Agent

if TYPE_CHECKING:  # loading a zoo encoder must not import gymnasium
    import gymnasium as gym


def make_agent(cfg: Any, obs_shape: tuple[int, int, int], action_space: "gym.Space",
               device: torch.device | str = "cpu") -> Agent:
    """The agent ``cfg.algorithm`` names, sized for the task's observations and actions."""
    from ..envs import action_size

    if cfg.algorithm == "rainbow":
        from .rainbow import RainbowAgent

        return RainbowAgent(cfg, obs_shape, action_size(action_space), device)
    from .sac_curl import SacCurlAgent

    return SacCurlAgent(cfg, obs_shape, action_size(action_space), device)


def agent_for_task(cfg: Any, device: torch.device | str = "cpu"
                   ) -> tuple[Agent, tuple[int, ...], "gym.Space"]:
    """(untrained agent, observation shape, action space) for ``cfg``'s task, sized from its
    evaluation environment (made, read and closed): for tools that act or count without
    training (flops, eval)."""
    from ..envs import evaluation_env

    env = evaluation_env(cfg)
    try:
        obs_shape, space = tuple(env.observation_space.shape), env.action_space
    finally:
        env.close()
    return make_agent(cfg, obs_shape, space, device), obs_shape, space


__all__ = ["Agent", "agent_for_task", "make_agent"]
