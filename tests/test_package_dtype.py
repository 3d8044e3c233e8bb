"""Packages that store float16 weights (half the file, for the zoo shipped in a checkout) and
hand them out as float32, checked as strictly as float32 ones: the config's ``stored_dtype``
must describe the file's header exactly, before anything is built or read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from lever_transfer.errors import LeverError
from lever_transfer.zoo.encoder import load_encoder
from lever_transfer.zoo.package import (
    CARD,
    CONFIG,
    WEIGHTS,
    WRITTEN_KEYS,
    PackageError,
    read_config,
    read_package,
    sha256_file,
    write_package,
)
from lever_transfer.zoo.publishing import convert_package
from lever_transfer.zoo.transfer import load_into_agent

from .conftest import OBS_SHAPE, make_small_config
from .test_package_header import (
    CONV,
    edit_json,
    edit_weights,
    nothing_built_or_read,  # noqa: F401  (a fixture, used below)
)
from .test_zoo import make_package


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    """A real small SAC+CURL package with heads (float32) and its float16 conversion."""
    root = tmp_path_factory.mktemp("dtype")
    f32, _ = make_package(make_small_config, root, name="walker_walk-1k")
    return {"f32": f32, "f16": convert_package(f32, root / "walker_walk-1k-f16")}


def header_dtypes(path: Path) -> set[str]:
    with safe_open(str(path / WEIGHTS), framework="pt") as f:
        return {f.get_slice(key).get_dtype() for key in f.keys()}


def test_float16_package_is_half_the_size_and_hashed_over_the_stored_bytes(packages):
    f32, f16 = packages["f32"], packages["f16"]
    ratio = os.path.getsize(f16 / WEIGHTS) / os.path.getsize(f32 / WEIGHTS)
    assert 0.49 < ratio < 0.51, ratio  # 2 bytes a value instead of 4, plus the same header
    assert header_dtypes(f32) == {"F32"} and header_dtypes(f16) == {"F16"}
    config16, config32 = read_config(f16), read_config(f32)
    assert config16.stored_dtype == "float16" and config32.stored_dtype == "float32"
    assert config16.sha256 == sha256_file(f16 / WEIGHTS) != config32.sha256
    assert config16.num_parameters == config32.num_parameters
    assert ({k: v for k, v in config16.to_json().items() if k not in WRITTEN_KEYS}
            == {k: v for k, v in config32.to_json().items() if k not in WRITTEN_KEYS})
    card = (f16 / CARD).read_text()  # regenerated: it quotes the new digest and the new name
    assert config16.sha256 in card and "# walker_walk-1k-f16" in card


def test_loaded_tensors_are_float32_and_the_float16_rounded_originals(packages):
    original = read_package(packages["f32"]).tensors
    loaded = read_package(packages["f16"]).tensors
    assert loaded.keys() == original.keys() and len(loaded) > 10
    for key, tensor in loaded.items():
        assert tensor.dtype == torch.float32, key
        assert torch.equal(tensor, original[key].half().float()), key
    assert any(not torch.equal(loaded[k], original[k]) for k in loaded)  # rounding happened


def test_float16_latents_are_close_to_the_float32_ones(packages):
    """The float16 package's encoder is the float32 computation with rounded weights. Rounding
    to float16's 11 significant bits moves each weight by at most 2^-11 (0.05%) of itself; over
    a dot product these errors mostly cancel, and LayerNorm rescales the last layer to unit
    variance. Measured: at most 0.05% of a layer's largest latent (0.14% at the LayerNorm), so
    1% leaves a margin of 7x and more, while any real fault (bytes misread, a tensor swapped
    or left unrounded in the wrong place) moves latents by their own size."""
    e32, e16 = (load_encoder(str(packages[k])) for k in ("f32", "f16"))
    obs = torch.randint(0, 256, (4, *OBS_SHAPE), dtype=torch.uint8,
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for layer in range(1, e32.encoder.num_layers + 1):
            a, b = e32(obs, layer), e16(obs, layer)
            assert b.dtype == torch.float32
            assert (b - a).abs().max() <= 0.01 * a.abs().max(), layer
        rounded = {k: v.half().float() for k, v in e32.encoder.state_dict().items()}
        e32.encoder.load_state_dict(rounded)
        assert torch.equal(e32(obs), e16(obs))  # exactly float32 arithmetic on rounded weights


def test_finetune_loads_a_float16_package_into_the_agent(small_config, packages):
    """transfer full: encoder, the actor's fc and the heads all arrive as float32."""
    from lever_transfer.agents.sac_curl import SacCurlAgent

    package = read_package(packages["f16"])
    cfg = small_config(seed=7, pretrained=str(packages["f16"]), transfer="full")
    agent = SacCurlAgent(cfg, OBS_SHAPE, 6)
    load_into_agent(agent, package, cfg, 6)
    state = agent.state_dict()
    expected = {**{f"critic_encoder.{k}": v for k, v in package.part("encoder").items()},
                **{f"actor_encoder.layers.4.{k}": v for k, v in package.part("actor_fc").items()},
                **package.part("heads")}  # heads.actor., heads.critic., heads.log_alpha
    assert "log_alpha" in expected and "actor.trunk.0.weight" in expected
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


STORED_MISMATCHES = {
    "float16 tensors, config says float32": (
        "f16", lambda f: edit_json(f, lambda c: c.update(stored_dtype="float32")),
        f"tensor {CONV} is (32, 9, 3, 3) torch.float16, the config's architecture needs "
        f"(32, 9, 3, 3) torch.float32 (stored_dtype float32;"),
    "float16 tensors, config without stored_dtype (as before it existed)": (
        "f16", lambda f: edit_json(f, lambda c: c.pop("stored_dtype")),
        f"tensor {CONV} is (32, 9, 3, 3) torch.float16, the config's architecture needs "
        f"(32, 9, 3, 3) torch.float32"),
    "float32 tensors, config says float16": (
        "f32", lambda f: edit_json(f, lambda c: c.update(stored_dtype="float16")),
        f"tensor {CONV} is (32, 9, 3, 3) torch.float32, the config's architecture needs "
        f"(32, 9, 3, 3) torch.float16 (stored_dtype float16;"),
    "one float32 tensor among float16 ones": (
        "f16", lambda f: edit_weights(f, lambda t: t.update({CONV: t[CONV].float()})),
        f"tensor {CONV} is (32, 9, 3, 3) torch.float32, the config's architecture needs "
        f"(32, 9, 3, 3) torch.float16"),
    "a stored dtype lever-transfer does not write": (
        "f16", lambda f: edit_json(f, lambda c: c.update(stored_dtype="bfloat16")),
        "stored_dtype 'bfloat16' is not one of float32, float16"),
    "the 329 GB config over float16 weights": (
        "f16", lambda f: edit_json(f, lambda c: c["architecture_args"].update(
            num_filters=8192, feature_dim=8192)), "needs (8192, 9, 3, 3) torch.float16"),
}


@pytest.mark.usefixtures("nothing_built_or_read")  # fails if a module is built or data read
@pytest.mark.parametrize("case", sorted(STORED_MISMATCHES))
def test_stored_dtype_mismatch_is_refused_from_the_header_before_building(packages, tmp_path,
                                                                          case):
    source, damage, words = STORED_MISMATCHES[case]
    folder = tmp_path / "bad"
    shutil.copytree(packages[source], folder)
    damage(folder)
    config = json.loads((folder / CONFIG).read_text())
    assert config["sha256"] == sha256_file(folder / WEIGHTS)  # the digest is no help here
    with pytest.raises(PackageError) as refused:
        read_package(folder)
    assert words in str(refused.value) and "\n" not in str(refused.value), refused.value


def test_conversion_back_to_float32_is_lossless_and_in_place_works(packages, tmp_path):
    folder = tmp_path / "walker_walk-1k"
    shutil.copytree(packages["f16"], folder)
    half = read_package(folder).tensors
    convert_package(folder, folder, dtype="float32")  # in place, atomically
    assert header_dtypes(folder) == {"F32"} and read_config(folder).stored_dtype == "float32"
    back = read_package(folder).tensors
    assert all(torch.equal(back[k], half[k]) for k in half)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walker_walk-1k"]  # no temporaries
    with pytest.raises(LeverError, match="not 'bfloat16'"):
        convert_package(folder, tmp_path / "x", dtype="bfloat16")
    assert not (tmp_path / "x").exists()


def test_write_package_leaves_integers_alone_and_refuses_float16_overflow(tmp_path):
    tensors = {"encoder.w": torch.ones(3), "encoder.steps": torch.arange(3),
               "encoder.mask": torch.ones(2, dtype=torch.bool)}
    write_package(tmp_path / "mixed", tensors, {}, dtype="float16")
    with safe_open(str(tmp_path / "mixed" / WEIGHTS), framework="pt") as f:
        assert {k: f.get_slice(k).get_dtype() for k in f.keys()} == {
            "encoder.w": "F16", "encoder.steps": "I64", "encoder.mask": "BOOL"}
    with pytest.raises(LeverError, match="encoder.big holds values beyond torch.float16's range"):
        write_package(tmp_path / "big", {"encoder.big": torch.tensor([1.0, 1e5])}, {},
                      dtype="float16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed"]


def test_the_shipped_rainbow_package_converts_and_loads(tmp_path):
    """Dueling C51 heads and noisy-layer buffers, and a config without num_parameters."""
    shipped = Path(__file__).resolve().parents[1] / "zoo" / "qbert-100k"
    converted = convert_package(shipped, tmp_path / "qbert-100k")
    original, loaded = read_package(shipped).tensors, read_package(converted).tensors
    assert all(torch.equal(loaded[k], v.half().float()) for k, v in original.items())
    config = json.loads((converted / CONFIG).read_text())
    assert config["stored_dtype"] == "float16" and config["parts"] == ["encoder", "heads"]
