"""DeepMind Control pixel environments: real tasks, real rendering, a real worker process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lever_transfer.envs import DMCEnv, EnvWorker, list_tasks, make_env, parse_task
from lever_transfer.errors import TaskError

# gymnasium reports a worker's traceback as a UserWarning before re-raising its error here
pytestmark = pytest.mark.filterwarnings("ignore:.*ERROR:UserWarning")
# the tests that make an environment are marked slow; name parsing and backend errors are not


@pytest.fixture(scope="module")
def walker():
    env = DMCEnv("walker_walk", action_repeat=4, seed=0)
    yield env
    env.close()


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (MUJOCO_GL is fixed per process) with ``env`` set."""
    environ = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, env={**environ, **env})


@pytest.mark.slow
def test_spaces_frame_stack_and_render(walker):
    assert walker.observation_space.shape == (9, 100, 100)
    assert walker.observation_space.dtype == np.uint8
    assert walker.action_space.shape == (6,) and walker.action_space.dtype == np.float32
    assert (walker.action_space.low == -1).all() and (walker.action_space.high == 1).all()
    obs, info = walker.reset(seed=1)
    assert obs in walker.observation_space and info == {"env_steps": 0, "discount": 1.0}
    assert np.array_equal(obs[0:3], obs[3:6]) and np.array_equal(obs[3:6], obs[6:9])
    nxt, reward, terminated, truncated, info = walker.step(np.ones(6, np.float32))
    assert np.array_equal(nxt[0:6], obs[3:9])  # the stack shifts by one frame, oldest first
    assert not np.array_equal(nxt[6:9], obs[6:9])  # and the newest frame is new
    assert isinstance(reward, float) and (terminated, truncated) == (False, False)
    assert info["env_steps"] == 4 and info["discount"] == 1.0
    frame = walker.render()
    assert frame.shape == (100, 100, 3) and np.array_equal(frame, nxt[6:9].transpose(1, 2, 0))


@pytest.mark.slow
def test_action_repeat_sums_rewards_and_renders_the_last_step():
    once = DMCEnv("cartpole_swingup", action_repeat=4, render_size=32, seed=0)
    each = DMCEnv("cartpole_swingup", action_repeat=1, render_size=32, seed=0)
    once.reset(seed=7)
    each.reset(seed=7)
    action = np.array([0.7], np.float32)
    obs, reward, *_ = once.step(action)
    rewards = [each.step(action)[1] for _ in range(4)]
    assert reward == pytest.approx(sum(rewards), abs=1e-12) and reward > 0
    assert np.array_equal(obs[-3:], each.render().transpose(2, 0, 1))
    once.close()
    each.close()


@pytest.mark.slow
def test_episode_is_truncated_after_1000_env_steps():
    env = make_env("walker_walk", action_repeat=8, render_size=32, render_quality="fast", seed=0)
    env.reset(seed=2)
    steps, done, total = 0, False, 0.0
    while not done:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps, done, total = steps + 1, terminated or truncated, total + reward
    assert (steps, truncated, terminated, info["env_steps"]) == (125, True, False, 1000)
    assert 0.0 <= total <= 1000.0
    with pytest.raises(RuntimeError, match="reset"):  # dm_control would silently restart
        env.step(env.action_space.sample())
    env.close()


@pytest.mark.slow
def test_last_action_repeat_is_cut_at_the_time_limit():
    env = DMCEnv("walker_walk", action_repeat=300, render_size=32, render_quality="fast", seed=0)
    env.reset()
    results = [env.step(np.zeros(6, np.float32)) for _ in range(4)]  # 300, 600, 900, 1000
    assert [r[4]["env_steps"] for r in results] == [300, 600, 900, 1000]
    assert [r[3] for r in results] == [False, False, False, True]
    env.close()


@pytest.mark.slow
def test_same_seed_same_observations(walker):
    first = walker.reset(seed=3)[0]
    a = [walker.step(np.full(6, 0.3, np.float32))[:2] for _ in range(3)]
    assert np.array_equal(first, walker.reset(seed=3)[0])
    b = [walker.step(np.full(6, 0.3, np.float32))[:2] for _ in range(3)]
    assert all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b))
    assert not np.array_equal(first, walker.reset(seed=4)[0])
    # a seed given at construction is the seed of the first reset
    seeded = DMCEnv("walker_walk", action_repeat=4, seed=3)
    assert np.array_equal(seeded.reset()[0], first)
    seeded.close()


def test_unknown_task_is_one_line_with_close_matches():
    with pytest.raises(TaskError) as err:
        parse_task("walker_wlk")
    message = str(err.value)
    assert "did you mean 'walker_walk'" in message and "\n" not in message
    assert "lever-transfer tasks" in message
    assert parse_task("dmc:ball_in_cup_catch") == ("ball_in_cup", "catch")
    assert parse_task("point_mass_easy") == ("point_mass", "easy")
    tasks = list_tasks()
    for name in ("walker_walk", "walker_stand", "cheetah_run", "cartpole_swingup", "finger_spin",
                 "reacher_easy", "hopper_hop", "hopper_stand", "ball_in_cup_catch"):
        assert name in tasks and parse_task(name)


@pytest.mark.parametrize("kwargs, needle", [
    ({"render_quality": "ultra"}, "render_quality"),
    pytest.param({"camera_id": 9}, "camera_id", marks=pytest.mark.slow),  # checked on the model
    ({"action_repeat": 0}, "action_repeat"),
    pytest.param({"render_size": 5000}, "render_size", marks=pytest.mark.slow),
])
def test_bad_arguments_are_one_line_task_errors(kwargs, needle):
    with pytest.raises(TaskError, match=needle) as err:
        DMCEnv("walker_walk", **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_physics_state_gives_unlimited_hinges_as_sine_and_cosine():
    """reacher's shoulder turns without limit: its raw angle winds past ±pi (counting turns no
    frame shows), so the state gives sin and cos; a limited joint and a task that bounds its
    positions itself (finger) are unchanged."""
    reacher = make_env("reacher_easy", render_size=64, seed=0)
    reacher.reset(seed=0)
    for _ in range(30):
        reacher.step(np.ones(2, np.float32))  # full torque: the shoulder turns past pi
    qpos = reacher._env.physics.data.qpos.copy()
    position = reacher.physics_state()["position"]
    assert abs(qpos[0]) > np.pi  # wound past a half turn
    np.testing.assert_allclose(position, [qpos[1], np.sin(qpos[0]), np.cos(qpos[0])])
    reacher.close()
    cheetah = make_env("cheetah_run", render_size=64, seed=0)
    cheetah.reset(seed=0)
    qpos = cheetah._env.physics.data.qpos  # rootx is not observed; rooty is the unlimited pitch
    np.testing.assert_allclose(cheetah.physics_state()["position"],
                               [qpos[1], *qpos[3:], np.sin(qpos[2]), np.cos(qpos[2])])
    cheetah.close()
    finger = make_env("finger_spin", render_size=64, seed=0)
    finger.reset(seed=0)
    observed = finger._env.task.get_observation(finger._env.physics)["position"]
    np.testing.assert_array_equal(finger.physics_state()["position"], observed)
    finger.close()


@pytest.mark.slow
def test_quadruped_uses_camera_2_and_rescales_actions():
    env = DMCEnv("quadruped_walk", render_size=32, seed=0)
    assert env.camera_id == 2 and env.action_space.shape == (12,)
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    env.reset()
    env.step(np.ones(12, np.float32))
    spec = env._env.action_spec()
    assert np.allclose(env._env.physics.data.ctrl, spec.maximum)  # +1 is the real upper bound
    env.close()


@pytest.mark.slow
def test_worker_process_matches_the_direct_environment(walker):
    with EnvWorker("walker_walk", action_repeat=4, seed=0) as worker:
        assert worker.observation_space == walker.observation_space
        assert worker.action_space.shape == walker.action_space.shape
        a, info_a = worker.reset(seed=5)
        b, info_b = walker.reset(seed=5)
        assert np.array_equal(a, b) and info_a == info_b
        kept = []
        for i in range(4):
            action = np.full(6, 0.1 * i, np.float32)
            if i % 2:
                x = worker.step(action)
            else:
                worker.step_async(action)
                x = worker.step_wait()
            y = walker.step(action)
            assert np.array_equal(x[0], y[0]) and x[1:] == y[1:]
            kept.append((x[0], y[0]))
        # observations handed out are copies: later steps do not overwrite them
        assert all(np.array_equal(x, y) for x, y in kept)


@pytest.mark.slow
def test_worker_errors_surface_and_close_the_worker():
    worker = EnvWorker("walker_walk", action_repeat=1000, render_size=32, seed=0)
    worker.reset()
    with pytest.raises(ValueError, match="shape"):  # checked here: the worker lives on
        worker.step(np.zeros(3, np.float32))
    assert worker.step(np.zeros(6, np.float32))[3]  # one step ends the episode (truncated)
    with pytest.raises(RuntimeError, match="reset"):  # raised in the worker, re-raised here
        worker.step(np.zeros(6, np.float32))
    with pytest.raises(RuntimeError, match="closed"):
        worker.reset()
    worker.close()  # idempotent

    with pytest.raises(TaskError, match="walker_walk"):  # a bad name fails before any process
        EnvWorker("walker_wlk")


@contextlib.contextmanager
def deadline(seconds: int, what: str):
    """Fail the test if the block runs past ``seconds`` instead of blocking it forever: SIGALRM
    interrupts a wait (pipe read, process join) of this, the main, thread with an exception."""

    def expire(signum, frame):
        raise TimeoutError(f"{what} still running after {seconds} s: it hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.slow
def test_dead_worker_is_named_and_pending_close_does_not_hang():
    # normally a few seconds (mostly starting the two workers); a hang fails at the deadline
    worker = EnvWorker("walker_walk", render_size=32, seed=0)
    worker.reset()
    os.kill(worker._vec.processes[0].pid, signal.SIGKILL)
    with deadline(60, "a step on a dead worker"):
        with pytest.raises(RuntimeError, match="worker process died"):
            worker.step(np.zeros(6, np.float32))
    with deadline(60, "leaving a worker with a step pending"):
        with EnvWorker("walker_walk", render_size=32, seed=0) as worker:
            worker.reset()
            worker.step_async(np.zeros(6, np.float32))  # left pending: __exit__ must not wait
            process = worker._vec.processes[0]
            os.kill(process.pid, signal.SIGSTOP)  # on it, and a stopped worker never answers
    assert not process.is_alive()


@pytest.mark.slow
def test_fast_rendering_changes_pixels_only_slightly():
    paper = DMCEnv("walker_walk", seed=0)
    fast = DMCEnv("walker_walk", seed=0, render_quality="fast")
    a, b = paper.reset(seed=6)[0], fast.reset(seed=6)[0]
    difference = np.abs(a.astype(int) - b.astype(int)).mean()
    assert 0 < difference < 0.5  # out of 255 (measured ~0.02): a smaller shadow map
    paper.close()
    fast.close()


@pytest.mark.slow
def test_backend_is_chosen_when_unset_and_envs_import_lightly():
    result = run_python("""
        import os, sys
        import lever_transfer.envs as envs
        assert "dm_control" not in sys.modules and "torch" not in sys.modules
        backend = envs.select_gl_backend()
        assert os.environ["MUJOCO_GL"] == backend
        env = envs.DMCEnv("walker_walk", render_size=32)
        assert env.reset(seed=0)[0].std() > 0 and "torch" not in sys.modules
        print(backend)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("egl", "osmesa")


def test_unusable_backend_is_a_one_line_task_error():
    result = run_python("""
        from lever_transfer.envs import parse_task
        from lever_transfer.errors import TaskError
        try:
            parse_task("walker_walk")
        except TaskError as err:
            print(err)
    """, MUJOCO_GL="nonsense")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "MUJOCO_GL=nonsense" in lines[0] and "MUJOCO_GL=egl" in lines[0]


def test_broken_egl_falls_back_to_osmesa_or_names_the_fix():
    # glvnd's libEGL finds no driver here: EGL is really unusable in this process
    result = run_python("""
        from lever_transfer.envs import select_gl_backend
        from lever_transfer.errors import TaskError
        try:
            print(select_gl_backend())
        except TaskError as err:
            print(err)
    """, __EGL_VENDOR_LIBRARY_FILENAMES="/nonexistent/egl_vendor.json")
    assert result.returncode == 0, result.stderr
    output = result.stdout.strip()
    if output == "egl":
        pytest.skip("this libEGL ignores __EGL_VENDOR_LIBRARY_FILENAMES")
    if output == "osmesa":
        assert "OSMesa" in result.stderr and "libegl1" in result.stderr
    else:
        assert len(output.splitlines()) == 1
        assert "libegl1" in output and "libosmesa6" in output and "MUJOCO_GL=osmesa" in output
