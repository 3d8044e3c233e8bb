"""DeepMind Control from pixels behind gymnasium's API, and a worker process to overlap rendering.

Observations are ``frame_stack`` RGB frames rendered at ``render_size`` (channels first, oldest
first; a reset repeats its first frame), as CURL and the LeVER paper use them (table 4). Only the
last physics step of an action repeat is rendered: rendering costs 15-25 ms a frame on a CPU and
dominates a step, while physics costs well under a millisecond.

dm_control is imported lazily, after ``MUJOCO_GL`` is chosen (see `rendering`), so importing this
module is cheap and does not import torch (the worker process never needs it).
"""

from __future__ import annotations

import difflib
import functools
import os
import signal
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode
from gymnasium.vector.async_vector_env import AsyncState

from ..errors import TaskError
from .rendering import GL_FIX, import_suite, select_gl_backend

__all__ = ["DMCEnv", "EnvWorker", "list_tasks", "make_env", "parse_task", "select_gl_backend"]

RENDER_QUALITIES = ("paper", "fast")
FAST_SHADOW_SIZE = 512  # MuJoCo's default is 2048; 512 moves pixels by ~0.02/255 on average


@functools.lru_cache(maxsize=1)
def _all_tasks() -> tuple[tuple[str, str], ...]:
    return tuple(import_suite().ALL_TASKS)


def list_tasks() -> list[str]:
    """Every DMC task name this package accepts, e.g. ``walker_walk``."""
    return sorted(f"{domain}_{task}" for domain, task in _all_tasks())


def parse_task(name: str) -> tuple[str, str]:
    """``walker_walk`` (or ``dmc:walker_walk``) -> ("walker", "walk"); one-line error otherwise.

    Matched against dm_control's own list, because domains may contain underscores
    (``ball_in_cup_catch``, ``point_mass_easy``).
    """
    plain = name.removeprefix("dmc:")
    for domain, task in _all_tasks():
        if plain == f"{domain}_{task}":
            return domain, task
    close = difflib.get_close_matches(plain, list_tasks(), n=3)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise TaskError(f"unknown task {name!r}; {hint}(see: lever-transfer tasks)")


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TaskError(f"{name} must be a positive integer, got {value!r}; pass e.g. {name}=2")
    return int(value)


class DMCEnv(gym.Env):
    """A DMC task as stacked uint8 frames, with action repeat and [-1, 1] actions."""

    metadata = {"render_modes": ["rgb_array"]}
    render_mode = "rgb_array"

    def __init__(self, task: str, action_repeat: int = 2, frame_stack: int = 3,
                 render_size: int = 100, render_quality: str = "paper",
                 camera_id: int | None = None, seed: int | None = None):
        domain, name = parse_task(task)
        if render_quality not in RENDER_QUALITIES:
            raise TaskError(f"render_quality {render_quality!r} is not one of "
                            f"{', '.join(RENDER_QUALITIES)}; use 'paper' for the paper's pixels")
        self.task = f"{domain}_{name}"
        self.action_repeat = _positive("action_repeat", action_repeat)
        self.frame_stack = _positive("frame_stack", frame_stack)
        self.render_size = _positive("render_size", render_size)
        self.render_quality = render_quality
        self.camera_id = (2 if domain == "quadruped" else 0) if camera_id is None else camera_id
        self._env = import_suite().load(domain, name, task_kwargs={"random": seed})
        model = self._env.physics.model
        self._check_camera(model)
        if render_quality == "fast":  # read when the first render creates the GL context
            model.vis.quality.shadowsize = FAST_SHADOW_SIZE
        spec = self._env.action_spec()
        low, high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        # Rescale bounded dimensions that are not [-1, 1] (quadruped); LQR's are unbounded.
        scaled = np.isfinite(low) & np.isfinite(high) & (high - low < 1e6)
        self._low, self._high = np.where(scaled, low, -1.0), np.where(scaled, high, 1.0)
        self._rescale = not (np.all(self._low == -1.0) and np.all(self._high == 1.0))
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32, seed=seed)
        self.observation_space = gym.spaces.Box(
            0, 255, (3 * self.frame_stack, self.render_size, self.render_size), np.uint8, seed=seed)
        self._frames: deque[np.ndarray] = deque(maxlen=self.frame_stack)
        self._camera: Any = None  # dm_control Camera, made at the first render and reused
        self._env_steps, self._done, self._closed = 0, True, False

    def _check_camera(self, model: Any) -> None:
        size = min(model.vis.global_.offwidth, model.vis.global_.offheight)
        if self.render_size > size:
            raise TaskError(f"render_size {self.render_size} exceeds {self.task}'s offscreen "
                            f"buffer ({size} px); use render_size <= {size}")
        if not -1 <= self.camera_id < model.ncam:
            raise TaskError(f"camera_id {self.camera_id} does not exist in {self.task}; use -1 "
                            f"(free camera) to {model.ncam - 1}")

    def _render(self) -> np.ndarray:
        try:
            if self._camera is None:
                from dm_control.mujoco import Camera

                self._camera = Camera(self._env.physics, self.render_size, self.render_size,
                                      self.camera_id)
            frame = self._camera.render()  # a view of the camera's buffer: copied below
        except Exception as exc:  # noqa: BLE001 -- GL failures come in many types
            raise TaskError(f"rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')} "
                            f"({exc.__class__.__name__}: {' '.join(str(exc).split())}); "
                            f"{GL_FIX}") from None
        return np.ascontiguousarray(frame.transpose(2, 0, 1))

    def _observation(self) -> np.ndarray:
        return np.concatenate(self._frames, axis=0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; a seed makes the initial state (and all that follows) reproducible."""
        super().reset(seed=seed)
        self._require_open()
        if seed is not None:  # dm_control draws initial states from the task's RandomState
            self._env.task._random = np.random.RandomState(seed)
        self._env.reset()
        self._env_steps, self._done = 0, False
        frame = self._render()
        for _ in range(self.frame_stack):
            self._frames.append(frame)
        return self._observation(), {"env_steps": 0, "discount": 1.0}

    def _physics_action(self, action: np.ndarray) -> np.ndarray:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"{self.task} takes actions of shape {self.action_space.shape}, "
                             f"got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"non-finite action {action} for {self.task}")
        action = np.clip(action, -1.0, 1.0)
        if self._rescale:
            action = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
        return action

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """``action_repeat`` physics steps with one action, summed reward, one rendered frame."""
        self._require_open()
        if self._done:
            raise RuntimeError(f"{self.task}: call reset() before step() (the episode is over "
                               "or has not started)")
        physics_action = self._physics_action(action)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(physics_action)
            reward += time_step.reward or 0.0
            self._env_steps += 1
            if time_step.last():
                break
        self._frames.append(self._render())
        self._done = time_step.last()
        terminated = bool(self._done and time_step.discount == 0.0)
        truncated = bool(self._done and not terminated)
        info = {"env_steps": self._env_steps, "discount": float(time_step.discount)}
        return self._observation(), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray:
        """The newest frame, HWC uint8 (for videos)."""
        if not self._frames:
            raise RuntimeError(f"{self.task}: call reset() before render()")
        return self._frames[-1].transpose(1, 2, 0).copy()

    def physics_state(self) -> dict[str, np.ndarray]:
        """The task's state observation now (dm_control's observation dict: walker's
        ``orientations``, ``height``, ``velocity``), each flattened: what a probe regresses on.

        Where ``position`` is the raw joint angles (reacher, cheetah, hopper), an unlimited
        hinge's angle (reacher's shoulder, a torso's pitch) is given as its sine and cosine,
        as dm_control's bounded positions give cartpole's pole: the raw angle winds past ±pi
        and counts turns that no frame shows."""
        self._require_open()
        physics = self._env.physics
        state = {key: np.asarray(value, dtype=np.float64).ravel()
                 for key, value in self._env.task.get_observation(physics).items()}
        if "position" in state:
            state["position"] = self._bounded(state["position"], physics)
        return state

    def _bounded(self, position: np.ndarray, physics: Any) -> np.ndarray:
        if not hasattr(self, "_hinges"):  # decided once, so every step has the same dimensions
            self._hinges = _unlimited_hinges(position, physics)
        if not self._hinges:
            return position
        angles = position[self._hinges]
        return np.concatenate([np.delete(position, self._hinges), np.sin(angles), np.cos(angles)])

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.task}: the environment is closed")

    def close(self) -> None:
        """Free the GL and MuJoCo rendering contexts now rather than at garbage collection."""
        if not getattr(self, "_closed", True):
            self._closed, self._camera = True, None
            self._env.physics.free()


def _unlimited_hinges(position: np.ndarray, physics: Any) -> list[int]:
    """Indices into ``position`` of unlimited hinge angles, where ``position`` is the tail of
    the joint angles (qpos) itself; [] where the task already bounds it (finger, cartpole)."""
    qpos, model = physics.data.qpos, physics.model
    start = len(qpos) - len(position)
    if start < 0 or not np.array_equal(position, qpos[start:]):
        return []
    hinge = 3  # mjtJoint.mjJNT_HINGE
    return [int(model.jnt_qposadr[j]) - start for j in range(model.njnt)
            if model.jnt_type[j] == hinge and not model.jnt_limited[j]
            and model.jnt_qposadr[j] >= start]


def make_env(task: str, **kwargs: Any) -> DMCEnv:
    """A `DMCEnv` (the paper's defaults unless overridden)."""
    return DMCEnv(task, **kwargs)


class _WorkerEnvFactory:
    """Builds the `DMCEnv`; in the worker process it also ignores Ctrl-C first.

    Ctrl-C reaches the whole process group. The parent decides what happens (save, close the
    worker); a worker killed mid-step by SIGINT would only turn that into a confusing error.
    """

    def __init__(self, task: str, kwargs: dict[str, Any]):
        self.task, self.kwargs, self.parent_pid = task, kwargs, os.getpid()

    def __call__(self) -> DMCEnv:
        if os.getpid() != self.parent_pid:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return DMCEnv(self.task, **self.kwargs)


class EnvWorker:
    """One `DMCEnv` in its own process, so rendering overlaps the agent's update.

    Built on gymnasium's ``AsyncVectorEnv`` with one env, shared memory and no autoreset: call
    ``step_async(action)``, run an update while the worker simulates and renders, then
    ``step_wait()``. Outputs are unbatched and observations copied out of shared memory, which
    the next step overwrites. A worker that fails or dies raises here and closes the worker.
    The ``spawn`` start method keeps torch (loaded in the parent) out of the worker.
    """

    def __init__(self, task: str, **kwargs: Any):
        select_gl_backend()  # probe once here; the worker inherits MUJOCO_GL
        self.task = task
        self._vec: AsyncVectorEnv | None = None
        # AsyncVectorEnv builds one env in this process for its spaces, so a bad task name or
        # argument raises its TaskError here, before any process starts.
        self._vec = self._guard(lambda: AsyncVectorEnv(
            [_WorkerEnvFactory(task, kwargs)], shared_memory=True, copy=False, context="spawn",
            autoreset_mode=AutoresetMode.DISABLED, daemon=True), starting=True)
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space

    def _guard(self, call: Any, starting: bool = False) -> Any:
        """Run ``call``; on any failure close the worker, and name a dead process plainly."""
        if self._vec is None and not starting:
            raise RuntimeError(f"the {self.task} environment worker is closed")
        try:
            return call()
        except (EOFError, ConnectionError) as exc:
            code = self._exitcode()
            self.close()
            how = "died" if code is None else f"died with exit code {code}"
            hint = ("; a script that starts workers needs `if __name__ == '__main__':`"
                    if starting else "")
            raise RuntimeError(f"the {self.task} environment worker process {how} (its own "
                               f"error, if any, is printed above){hint}") from exc
        except BaseException:
            self.close()  # after a worker error gymnasium drops its pipe: it cannot step again
            raise

    @property
    def _open_vec(self) -> AsyncVectorEnv:
        """The vector env, for the calls ``_guard`` runs once it has checked it is open."""
        assert self._vec is not None
        return self._vec

    def _exitcode(self) -> int | None:
        if self._vec is None:
            return None
        process = self._vec.processes[0]
        process.join(timeout=1.0)
        return process.exitcode

    @staticmethod
    def _unbatch(info: dict[str, Any]) -> dict[str, Any]:
        return {k: (v[0].item() if isinstance(v[0], np.generic) else v[0])
                for k, v in info.items() if not k.startswith("_")}

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self._guard(lambda: self._open_vec.reset(
            seed=None if seed is None else [seed]))
        return obs[0].copy(), self._unbatch(info)

    def step_async(self, action: np.ndarray) -> None:
        batched = np.asarray(action, dtype=np.float32)[None]
        if batched.shape[1:] != self.action_space.shape:  # a caller's bug: keep the worker
            raise ValueError(f"{self.task} takes actions of shape {self.action_space.shape}, "
                             f"got {batched.shape[1:]}")
        self._guard(lambda: self._open_vec.step_async(batched))

    def step_wait(self) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._guard(lambda: self._open_vec.step_wait())
        return (obs[0].copy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]),
                self._unbatch(info))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.step_async(action)
        return self.step_wait()

    def close(self) -> None:
        """Stop the worker without waiting on it: terminate, then kill if it lingers."""
        vec, self._vec = self._vec, None
        if vec is None:
            return
        for process in vec.processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=5.0)
            if process.is_alive():
                process.kill()
                process.join()
        vec._state = AsyncState.DEFAULT  # a pending step is abandoned, not awaited
        vec.close(terminate=True)  # closes the pipes; the processes are already gone

    def __enter__(self) -> "EnvWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_vec", None) is not None:
            self.close()
