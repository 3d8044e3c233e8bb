"""Fuzzing the package loader: any damage to a package is one PackageError, never a crash."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lever_transfer.zoo.encoder import ZooEncoder
from lever_transfer.zoo.package import CONFIG, WEIGHTS, PackageError, read_package, sha256_file

from .test_zoo import make_package


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    from lever_transfer.config import load_config

    def small_config(**overrides):
        return load_config("walker_walk", {"batch_size": 8, "hidden_dim": 32, "device": "cpu",
                                           **overrides})
    path, _ = make_package(small_config, tmp_path_factory.mktemp("pkg"))
    return path


def _copy(pristine: Path, tmp_path: Path, n: int) -> Path:
    target = tmp_path / f"copy{n}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(pristine, target)
    return target


def _rehash(path: Path) -> None:
    """Make the config's sha256 agree with the damaged weights, so deeper checks must catch it."""
    import json

    config = json.loads((path / CONFIG).read_text())
    config["sha256"] = sha256_file(path / WEIGHTS)
    (path / CONFIG).write_text(json.dumps(config))


counter = iter(range(10**9))


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file=st.sampled_from([WEIGHTS, CONFIG]), position=st.floats(0, 1),
       mode=st.sampled_from(["flip", "truncate", "insert"]), rehash=st.booleans(),
       byte=st.integers(0, 255))
def test_damaged_bytes_never_crash_the_loader(pristine, tmp_path, file, position, mode, rehash,
                                              byte):
    path = _copy(pristine, tmp_path, next(counter))
    data = bytearray((path / file).read_bytes())
    at = min(int(position * len(data)), len(data) - 1)
    if mode == "flip":
        data[at] ^= byte or 1
    elif mode == "truncate":
        data = data[:at]
    else:
        data[at:at] = bytes([byte])
    (path / file).write_bytes(bytes(data))
    if rehash and file == WEIGHTS:
        _rehash(path)
    try:
        package = read_package(path)
    except PackageError as exc:
        assert "\n" not in str(exc)
        return
    # it loaded: the change left a consistent package (a flipped weight that was re-hashed, or a
    # config value no check depends on); it must then also work
    encoder = ZooEncoder.from_package(package)
    spec = encoder.observation_spec
    obs = torch.zeros((1, spec["channels"] * spec["frame_stack"], spec["render_size"],
                       spec["render_size"]), dtype=torch.uint8)
    assert encoder(obs).shape == (1, *encoder.latent_shape)


def test_huge_declared_header_is_refused(pristine, tmp_path):
    path = _copy(pristine, tmp_path, -1)
    data = (path / WEIGHTS).read_bytes()
    (path / WEIGHTS).write_bytes(struct.pack("<Q", 2**62) + data[8:])
    _rehash(path)
    with pytest.raises(PackageError, match="not a readable safetensors file"):
        read_package(path)
