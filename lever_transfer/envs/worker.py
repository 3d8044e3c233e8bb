"""One environment in its own process, so rendering overlaps the agent's update.

Built on gymnasium's ``AsyncVectorEnv`` (one env, shared memory, no autoreset): the trainer calls
``step_async(action)``, runs an update while the worker simulates and renders, then
``step_wait()``. Outputs are unbatched and observations copied out of shared memory, which the
next step overwrites.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode

from .dmc import DMCEnv, parse_task, select_gl_backend


class EnvWorker:
    def __init__(self, task: str, **kwargs: Any):
        parse_task(task)  # a bad name fails here, in one line, not in the worker
        select_gl_backend()  # the worker inherits MUJOCO_GL
        self._vec = AsyncVectorEnv([functools.partial(DMCEnv, task, **kwargs)], shared_memory=True,
                                   context="spawn", autoreset_mode=AutoresetMode.DISABLED)
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space

    @staticmethod
    def _first(info: dict[str, Any]) -> dict[str, Any]:
        return {k: v[0] for k, v in info.items() if not k.startswith("_")}

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self._vec.reset(seed=None if seed is None else [seed])
        return obs[0].copy(), self._first(info)

    def step_async(self, action: np.ndarray) -> None:
        self._vec.step_async(np.asarray(action, dtype=np.float32)[None])

    def step_wait(self) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._vec.step_wait()
        return (obs[0].copy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]),
                self._first(info))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.step_async(action)
        return self.step_wait()

    def close(self) -> None:
        self._vec.close(terminate=True)

    def __enter__(self) -> "EnvWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
