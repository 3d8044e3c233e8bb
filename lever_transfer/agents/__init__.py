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
    if cfg.algorithm == "rainbow":
        from .rainbow import RainbowAgent

        return RainbowAgent(cfg, obs_shape, int(action_space.n), device)
    from .sac_curl import SacCurlAgent

    return SacCurlAgent(cfg, obs_shape, int(action_space.shape[0]), device)


__all__ = ["Agent", "make_agent"]
