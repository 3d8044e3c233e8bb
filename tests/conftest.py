"""Shared fixtures: small but real configurations, agents and batches, an isolated hub, and the
tiny schedule of the real runs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n auto` runs one test process per core: one thread each (and in the runs they
    # start), since two torch processes with a thread per core slow each other tenfold.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

# Property tests draw the same examples on every run, so CI is reproducible; set
# HYPOTHESIS_PROFILE=explore (and FUZZ_EXAMPLES=1000 for the package fuzzer) to search further.
from hypothesis import settings  # noqa: E402

settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

OBS_SHAPE = (9, 100, 100)  # 3 stacked RGB frames at the paper's render size


@pytest.fixture(autouse=True)
def library_logger_as_a_python_user_finds_it():
    """In-process CLI runs (CliRunner, also in module-scoped fixtures) attach the CLI's handler
    to the ``lever_transfer`` logger, as the command line does once per process; every test
    starts and ends with the logger as a Python user finds it."""
    def reset() -> None:
        logger = logging.getLogger("lever_transfer")
        logger.handlers[:] = [h for h in logger.handlers if type(h).__name__ != "_EchoHandler"]
        logger.setLevel(logging.NOTSET)
        logger.propagate = True

    reset()
    yield
    reset()


@pytest.fixture(autouse=True, scope="session")
def float32_unless_asked():
    """``precision: auto`` resolves to float32 in-process on every CPU (module fixtures
    included), so a test's figures do not depend on which machine CI draws (bf16 where it has
    AMX-BF16 or AVX512-BF16); the precision tests ask for bf16, or pass CPU flags, explicitly."""
    from lever_transfer import precision

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "cpu_flags", lambda *args, **kwargs: frozenset())
        yield


def make_small_config(**overrides):
    """A walker_walk recipe shrunk for speed (hidden 32, batch 8), otherwise the paper's."""
    from lever_transfer.config import load_config

    return load_config("walker_walk", {"batch_size": 8, "hidden_dim": 32, "device": "cpu",
                                       **overrides})


@pytest.fixture
def isolated_hub(tmp_path, monkeypatch) -> Path:
    """An empty local hub of the test's own (``LEVER_HUB``, not created yet): what a test
    publishes, pulls or resolves stays in tmp_path, and hub:NAME finds the shipped zoo only.
    A subprocess gets it by passing ``LEVER_HUB`` in its env explicitly."""
    root = tmp_path / "hub"
    monkeypatch.setenv("LEVER_HUB", str(root))
    return root


@pytest.fixture
def offline_hub(isolated_hub, monkeypatch) -> Path:
    """``isolated_hub`` for the adapters' tests, which render gymnasium frames without a display:
    hub:NAME resolves from the repository's zoo only, whatever the user's hub holds."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # pygame renders without a display
    return isolated_hub


@pytest.fixture
def walker(offline_hub):
    """The shipped ``walker_stand-60k`` encoder, all layers frozen, on the CPU."""
    from lever_transfer import load_encoder

    return load_encoder("hub:walker_stand-60k", freeze_layers="all", device="cpu")


@pytest.fixture(scope="module")
def module_hub(tmp_path_factory) -> Iterator[Path]:
    """``isolated_hub`` for a module-scoped fixture: one hub for the module's tests."""
    root = tmp_path_factory.mktemp("hub") / "hub"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEVER_HUB", str(root))
        yield root


# The tiny schedule of every real run in the tests (those are marked slow): a few hundred agent
# steps with LeVER's freeze in the middle. walker_walk at action repeat 8 has 125 agent steps an
# episode, so 250 steps are two episodes and Tf = 100 falls inside the first; Atari games run 600
# agent steps, frozen at 300. A test states only what it changes:
# tiny_schedule("atari:qbert", freeze_at="350 agent_steps").
TINY_DMC = {"action_repeat": 8, "steps": "250 agent_steps", "init_steps": "50 agent_steps",
            "freeze_at": "100 agent_steps", "eval_every": "125 agent_steps", "eval_episodes": 1,
            "checkpoint_every": "125 agent_steps", "batch_size": 16, "hidden_dim": 32,
            "render_quality": "fast", "device": "cpu"}
TINY_ATARI = {"steps": "600 agent_steps", "init_steps": "100 agent_steps",
              "freeze_at": "300 agent_steps", "eval_every": "1M agent_steps", "eval_episodes": 1,
              "checkpoint_every": "1M agent_steps", "device": "cpu"}


def tiny_schedule(task: str = "walker_walk", **changes: object) -> dict[str, object]:
    """The tiny schedule of ``task``'s suite with ``changes``: overrides for ``load_config``."""
    return {**(TINY_ATARI if task.startswith("atari:") else TINY_DMC), **changes}


def tiny_config(task: str = "walker_walk", **changes: object):
    """``task``'s recipe on the tiny schedule, with ``changes``."""
    from lever_transfer.config import load_config

    return load_config(task, tiny_schedule(task, **changes))


def as_sets(schedule: Mapping[str, object], leave_out: Iterable[str] = ()) -> list[str]:
    """A schedule as the command line's ``--set KEY=VALUE`` options."""
    return [arg for key, value in schedule.items() if key not in leave_out
            for arg in ("--set", f"{key}={value}")]


@pytest.fixture
def small_config():
    """``make_small_config`` as a fixture, for tests that take it as an argument."""
    return make_small_config


def pixel_batch(batch: int, action_dim: int, seed: int = 0):
    from lever_transfer.replay import PixelBatch

    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 256, (batch, *OBS_SHAPE), dtype=np.uint8)
    return PixelBatch(obs=obs, action=rng.uniform(-1, 1, (batch, action_dim)).astype(np.float32),
                      reward=rng.standard_normal(batch).astype(np.float32),
                      discount=np.ones(batch, np.float32),
                      next_obs=rng.integers(0, 256, (batch, *OBS_SHAPE), dtype=np.uint8))


def latent_batch(batch: int, action_dim: int, shape=(2, 50), seed: int = 0):
    from lever_transfer.replay import LatentBatch

    rng = np.random.default_rng(seed)
    return LatentBatch(latent=rng.standard_normal((batch, *shape)).astype(np.float32),
                       next_latent=rng.standard_normal((batch, *shape)).astype(np.float32),
                       action=rng.uniform(-1, 1, (batch, action_dim)).astype(np.float32),
                       reward=rng.standard_normal(batch).astype(np.float32),
                       discount=np.ones(batch, np.float32))
