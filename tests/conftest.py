"""Shared fixtures: small but real configurations, agents and batches."""

from __future__ import annotations

import logging
import os

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
