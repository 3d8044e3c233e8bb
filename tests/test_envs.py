"""DeepMind Control pixel environments: real tasks, real rendering."""

from __future__ import annotations

import numpy as np
import pytest

from lever_transfer.envs import DMCEnv, EnvWorker, parse_task
from lever_transfer.errors import TaskError


@pytest.fixture(scope="module")
def walker():
    env = DMCEnv("walker_walk", action_repeat=4, seed=0)
    yield env
    env.close()


def test_spaces_and_frame_stack(walker):
    obs, info = walker.reset(seed=1)
    assert walker.observation_space.shape == (9, 100, 100) and obs.dtype == np.uint8
    assert walker.action_space.shape == (6,)
    assert np.array_equal(obs[0:3], obs[3:6]) and np.array_equal(obs[3:6], obs[6:9])
    nxt, reward, terminated, truncated, info = walker.step(np.ones(6, np.float32))
    assert np.array_equal(nxt[0:6], obs[3:9])  # the stack shifts by one frame
    assert not np.array_equal(nxt[6:9], obs[6:9])  # and the newest frame is new
    assert info["env_steps"] == 4 and isinstance(reward, float)


def test_episode_is_truncated_after_1000_env_steps(walker):
    walker.reset(seed=2)
    steps, done, total = 0, False, 0.0
    while not done:
        _, reward, terminated, truncated, info = walker.step(walker.action_space.sample())
        steps, done, total = steps + 1, terminated or truncated, total + reward
    assert (steps, truncated, terminated, info["env_steps"]) == (250, True, False, 1000)
    assert 0.0 <= total <= 1000.0


def test_same_seed_same_observations(walker):
    first = walker.reset(seed=3)[0]
    a = [walker.step(np.full(6, 0.3, np.float32))[0] for _ in range(3)]
    assert np.array_equal(first, walker.reset(seed=3)[0])
    b = [walker.step(np.full(6, 0.3, np.float32))[0] for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(first, walker.reset(seed=4)[0])


def test_unknown_task_is_one_line_with_close_matches():
    with pytest.raises(TaskError) as err:
        parse_task("walker_wlk")
    assert "walker_walk" in str(err.value) and "\n" not in str(err.value)
    assert parse_task("dmc:ball_in_cup_catch") == ("ball_in_cup", "catch")


def test_worker_process_matches_the_direct_environment(walker):
    with EnvWorker("walker_walk", action_repeat=4, seed=0) as worker:
        a, _ = worker.reset(seed=5)
        b, _ = walker.reset(seed=5)
        assert np.array_equal(a, b)
        for i in range(3):
            action = np.full(6, 0.1 * i, np.float32)
            worker.step_async(action)
            x = worker.step_wait()
            y = walker.step(action)
            assert np.array_equal(x[0], y[0]) and x[1:4] == y[1:4]


def test_fast_rendering_changes_pixels_only_slightly():
    paper = DMCEnv("walker_walk", seed=0)
    fast = DMCEnv("walker_walk", seed=0, render_quality="fast")
    a, b = paper.reset(seed=6)[0], fast.reset(seed=6)[0]
    difference = np.abs(a.astype(int) - b.astype(int)).mean()
    assert 0 < difference < 1.0  # out of 255: a smaller shadow map, barely visible
    paper.close()
    fast.close()
