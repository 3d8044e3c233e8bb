"""DeepMind Control from pixels behind gymnasium's API, and a worker process to overlap rendering.

Observations are ``frame_stack`` RGB frames rendered at ``render_size`` (channels first, oldest
first; a reset repeats its first frame), as CURL and the LeVER paper use them (table 4). Only the
last physics step of an action repeat is rendered: rendering costs about 16 ms a frame on a CPU
and dominates a step, while physics costs well under a millisecond.

dm_control is imported lazily, after ``MUJOCO_GL`` is chosen, so importing this module is cheap
and does not import torch (the worker process never needs it).
"""

from __future__ import annotations

import ctypes.util
import difflib
import functools
import os
import sys
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import TaskError

RENDER_QUALITIES = ("paper", "fast")
GL_FIX = ("install EGL (apt-get install libegl1 libgl1-mesa-dri) or OSMesa "
          "(apt-get install libosmesa6, then MUJOCO_GL=osmesa)")


def select_gl_backend() -> str:
    """Pick MUJOCO_GL before dm_control is imported: EGL, else OSMesa with a message, else fail."""
    if "MUJOCO_GL" in os.environ:
        return os.environ["MUJOCO_GL"]
    if ctypes.util.find_library("EGL"):
        os.environ["MUJOCO_GL"] = "egl"
    elif ctypes.util.find_library("OSMesa"):
        os.environ["MUJOCO_GL"] = "osmesa"
        print("lever-transfer: EGL not found, rendering with OSMesa (slower)", file=sys.stderr)
    else:
        raise TaskError(f"no headless OpenGL for MuJoCo rendering: {GL_FIX}")
    return os.environ["MUJOCO_GL"]


@functools.lru_cache(maxsize=1)
def _all_tasks() -> tuple[tuple[str, str], ...]:
    select_gl_backend()
    from dm_control import suite

    return tuple(suite.ALL_TASKS)


def list_tasks() -> list[str]:
    return sorted(f"{domain}_{task}" for domain, task in _all_tasks())


def parse_task(name: str) -> tuple[str, str]:
    """``walker_walk`` (or ``dmc:walker_walk``) -> ("walker", "walk"); one-line error otherwise."""
    plain = name.removeprefix("dmc:")
    for domain, task in _all_tasks():
        if plain == f"{domain}_{task}":
            return domain, task
    close = difflib.get_close_matches(plain, list_tasks(), n=3)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise TaskError(f"unknown task {name!r}; {hint}(see: lever-transfer tasks)")


class DMCEnv(gym.Env):
    """A DMC task as stacked uint8 frames, with action repeat and [-1, 1] actions."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, task: str, action_repeat: int = 2, frame_stack: int = 3,
                 render_size: int = 100, render_quality: str = "paper",
                 camera_id: int | None = None, seed: int | None = None):
        domain, name = parse_task(task)
        if render_quality not in RENDER_QUALITIES:
            raise TaskError(f"render_quality {render_quality!r} is not one of {RENDER_QUALITIES}")
        from dm_control import suite

        self.task = f"{domain}_{name}"
        self.action_repeat, self.frame_stack, self.render_size = action_repeat, frame_stack, render_size
        self.camera_id = (2 if domain == "quadruped" else 0) if camera_id is None else camera_id
        self._env = suite.load(domain, name, task_kwargs={"random": seed})
        if render_quality == "fast":  # smaller shadow map; read when the GL context is created
            self._env.physics.model.vis.quality.shadowsize = 512
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float32), spec.maximum.astype(np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        self.observation_space = gym.spaces.Box(
            0, 255, (3 * frame_stack, render_size, render_size), np.uint8)
        self._frames: deque[np.ndarray] = deque(maxlen=frame_stack)
        self._env_steps = 0

    def _render(self) -> np.ndarray:
        try:
            frame = self._env.physics.render(self.render_size, self.render_size, self.camera_id)
        except Exception as exc:  # GL errors come in many types
            raise TaskError(f"rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')} "
                            f"({exc.__class__.__name__}: {exc}); {GL_FIX}") from None
        return np.ascontiguousarray(frame.transpose(2, 0, 1))

    def _observation(self) -> np.ndarray:
        return np.concatenate(list(self._frames), axis=0)

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:  # dm_control draws initial states from the task's RandomState
            self._env.task._random = np.random.RandomState(seed)
        self._env.reset()
        self._env_steps = 0
        frame = self._render()
        for _ in range(self.frame_stack):
            self._frames.append(frame)
        return self._observation(), {"env_steps": 0, "discount": 1.0}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        scaled = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(scaled)
            reward += time_step.reward or 0.0
            self._env_steps += 1
            if time_step.last():
                break
        self._frames.append(self._render())
        terminated = bool(time_step.last() and time_step.discount == 0.0)
        truncated = bool(time_step.last() and not terminated)
        info = {"env_steps": self._env_steps, "discount": float(time_step.discount)}
        return self._observation(), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray:
        """The newest frame, HWC uint8 (for videos)."""
        return self._frames[-1].transpose(1, 2, 0).copy()

    def close(self) -> None:
        self._env.close()


def make_env(task: str, **kwargs: Any) -> DMCEnv:
    return DMCEnv(task, **kwargs)
