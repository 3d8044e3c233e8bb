"""Hostile and broken inputs through the real CLI: each is one line of error that names the fix,
exit status 2, and not a byte changed on disk (no run directory, no hub entry, no rewritten
file). The package loader's own fuzz test is tests/test_package_fuzz.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from lever_transfer.cli import main
from lever_transfer.config import FIELD_NAMES, load_config
from lever_transfer.errors import ConfigError, LeverError
from lever_transfer.registry import AGENTS
from lever_transfer.settings import field_names
from lever_transfer.zoo import publishing as zoo
from lever_transfer.zoo.encoder import load_encoder
from lever_transfer.zoo.package import CONFIG, WEIGHTS, sha256_file

from .test_zoo import make_package


def rehash(package: Path) -> None:
    """Make config.json's sha256 agree with the damaged weights, so deeper checks must act."""
    config = json.loads((package / CONFIG).read_text())
    config["sha256"] = sha256_file(package / WEIGHTS)
    (package / CONFIG).write_text(json.dumps(config))


def edit_tensors(edit: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def damage(package: Path) -> None:
        tensors = load_file(str(package / WEIGHTS))
        edit(tensors)
        save_file(tensors, str(package / WEIGHTS))
        rehash(package)
    return damage


def edit_config(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(package: Path) -> None:
        config = json.loads((package / CONFIG).read_text())
        edit(config)
        (package / CONFIG).write_text(json.dumps(config))
    return damage


def truncate(package: Path) -> None:
    data = (package / WEIGHTS).read_bytes()
    (package / WEIGHTS).write_bytes(data[: len(data) // 2])
    rehash(package)


def huge_header(package: Path) -> None:
    data = (package / WEIGHTS).read_bytes()
    (package / WEIGHTS).write_bytes(struct.pack("<Q", 2**62) + data[8:])
    rehash(package)


def first_conv(tensors: dict[str, torch.Tensor]) -> str:
    return next(k for k in sorted(tensors) if k.startswith("encoder.") and k.endswith("weight"))


PACKAGE_DAMAGE = {
    "truncated weights": (truncate, "safetensors"),
    "huge declared header": (huge_header, "safetensors"),
    "float64 tensors": (edit_tensors(lambda t: t.update({k: v.double() for k, v in t.items()})),
                        "float64"),
    "wrong shape": (edit_tensors(lambda t: t.update({first_conv(t): torch.zeros(32, 9, 5, 5)})),
                    "(32, 9, 5, 5)"),
    "extra tensor": (edit_tensors(lambda t: t.update({"encoder.sneaky": torch.zeros(3)})),
                     "extra tensors"),
    "missing tensor": (edit_tensors(lambda t: t.pop(first_conv(t))), "missing"),
    "one float16 tensor": (
        edit_tensors(lambda t: t.update({first_conv(t): t[first_conv(t)].half()})),
        "torch.float16, the config's architecture needs"),
    "renamed tensor": (
        edit_tensors(lambda t: t.update({first_conv(t) + "s": t.pop(first_conv(t))})),
        "extra tensors"),
    "config declares another size": (
        edit_config(lambda c: c.update(num_parameters=c["num_parameters"] * 1000)),
        "declares num_parameters"),
    "malformed config.json": (lambda p: (p / CONFIG).write_text('{"sha256": '), "not valid JSON"),
    "config.json not an object": (lambda p: (p / CONFIG).write_text("[1, 2]"), "config.json"),
    "config claims another architecture": (
        edit_config(lambda c: c.update(architecture="impala")), "'impala' encoder"),
    "config claims an unknown architecture": (
        edit_config(lambda c: c.update(architecture="resnet9000")), "resnet9000"),
    "config with a wrong-typed field": (
        edit_config(lambda c: c.update(observation="three frames")), "observation"),
}

RECIPES = {
    "wrong type": ("extends: walker_walk\nbatch_size: lots\n", "batch_size"),
    "negative size": ("extends: walker_walk\nreplay_capacity: -5\n", "replay_capacity"),
    "zero size": ("extends: walker_walk\nbatch_size: 0\n", "batch_size"),
    "unknown key": ("extends: walker_walk\nbatchsize: 64\n", "batchsize"),
    "malformed YAML": ("extends: walker_walk\nbatch_size: [1, 2\n", "bad.yaml"),
    "missing parent": ("extends: no_such_recipe\n", "no_such_recipe"),
    "not a mapping": ("- walker_walk\n", "bad.yaml"),
    "bare step count": ("extends: walker_walk\nfreeze_at: 1000\n", "freeze_at"),
}


@pytest.fixture
def workspace(small_config, tmp_path, isolated_hub, monkeypatch):
    """A working directory with a good package (`good/`) and an empty local hub (`hub/`)."""
    make_package(small_config, tmp_path, name="good")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def disk(root: Path) -> dict[str, str]:
    """Every file and folder under root, with the sha256 of each file."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                       if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def refused(root: Path, *args: str) -> str:
    """Run the CLI; assert one error line (last; progress lines may come before it), status 2
    and an untouched disk; return the error line."""
    before = disk(root)
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 2, (result.output, result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.output.strip().endswith(errors[0]), result.output
    assert "Traceback" not in result.output
    assert disk(root) == before, "the refused command changed the disk"
    return errors[0]


@pytest.mark.parametrize("damage", sorted(PACKAGE_DAMAGE))
def test_damaged_package_is_refused_before_any_run_starts(workspace, damage):
    shutil.copytree(workspace / "good", workspace / "bad")
    apply, words = PACKAGE_DAMAGE[damage]
    apply(workspace / "bad")
    line = refused(workspace, "finetune", "--from", "bad", "--to", "walker_walk",
                   "--out", "runs/ft")
    assert words in line


@pytest.mark.parametrize("damage", ["truncated weights", "extra tensor", "malformed config.json"])
def test_damaged_package_in_the_hub_is_refused(workspace, damage):
    zoo.publish(workspace / "good", "walker_walk-1k", say=lambda m: None)
    PACKAGE_DAMAGE[damage][0](workspace / "hub" / "walker_walk-1k")
    refused(workspace, "finetune", "--from", "hub:walker_walk-1k", "--to", "walker_walk",
            "--out", "runs/ft")
    refused(workspace, "zoo", "show", "walker_walk-1k")
    assert "failed verification" in refused(workspace, "zoo", "verify")


@pytest.mark.parametrize("name", ["../outside", "/etc/passwd", "a/../../b", "..", "UPPER/x"])
def test_traversal_in_a_reference_is_refused(workspace, name):
    line = refused(workspace, "finetune", "--from", f"hub:{name}", "--to", "walker_walk")
    assert "name" in line


@pytest.mark.parametrize("name", ["../outside", "sub/dir", ".hidden"])
def test_traversal_in_the_index_is_refused(workspace, name):
    (workspace / "hub").mkdir()
    (workspace / "hub" / "index.yaml").write_text(f"encoders:\n  '{name}': {{sha256: abc}}\n")
    refused(workspace, "zoo", "list")
    refused(workspace, "finetune", "--from", "hub:walker_walk-1k", "--to", "walker_walk")


@pytest.mark.parametrize("case", sorted(RECIPES))
def test_broken_recipe_is_refused(workspace, case):
    text, words = RECIPES[case]
    (workspace / "bad.yaml").write_text(text)
    assert words in refused(workspace, "train", "bad.yaml", "--out", "runs/bad")


@pytest.mark.parametrize("args, words", [
    (["train", "walker_fly"], "walker_fly"),
    (["train", "atari:pong_deluxe"], "pong_deluxe"),
    (["train", "walker_walk", "--set", "batch_size=-1"], "batch_size"),
    (["train", "walker_walk", "--set", "crop_size=120"], "crop"),
    (["train", "walker_walk", "--replay-memory", "1MB"], "batch"),
    (["train", "walker_walk", "--replay-memory", "-3GB"], "memory"),
    (["train", "walker_walk", "--steps", "0"], "steps"),
    (["finetune", "--from", "good", "--to", "walker_walk", "--set", "frame_stack=4"],
     "--set frame_stack=3"),
    (["finetune", "--from", "good", "--to", "walker_walk", "--set", "render_size=90"],
     "--set render_size=100"),
    (["finetune", "--from", "good", "--to", "walker_walk", "--set", "num_filters=16"],
     "num_filters"),
    (["finetune", "--from", "good", "--to", "atari:qbert"], "DMC encoder"),
    (["train", "atari:qbert", "--set", "frame_stack=3"], "frame_stack"),
    (["finetune", "--from", "good", "--to", "walker_walk", "--freeze-layers", "9"], "freeze"),
    (["eval", "good", "--episodes", "0"], "episodes"),
    (["resume", "nowhere"], "not a run directory"),
])
def test_bad_task_shape_or_size_is_refused(workspace, args, words):
    assert words in refused(workspace, *args)


@pytest.mark.parametrize("shape", [(2, 12, 84, 84), (2, 3, 84, 84), (2, 9, 90, 90), (2, 9, 84)])
def test_observations_of_the_wrong_shape_are_refused_by_a_loaded_encoder(workspace, shape):
    encoder = load_encoder("good", freeze_layers="all")
    assert encoder(torch.zeros((2, 9, 100, 100), dtype=torch.uint8)).shape == (2, 50)
    with pytest.raises(LeverError, match=r"expects uint8 observations \[B, 9, H, H\]"):
        encoder(torch.zeros(shape, dtype=torch.uint8))


ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6)


# shared keys, every algorithm's own (flat: the recipe's algorithm's or another's, an error) and
# the algorithm sections themselves
RECIPE_KEYS = sorted({*FIELD_NAMES, *AGENTS,
                      *(name for entry in AGENTS.values() for name in field_names(entry.settings))})


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(RECIPE_KEYS), value=ANY_VALUE)
def test_any_value_for_any_recipe_key_loads_or_is_one_clear_error(key, value):
    """A recipe file's values are whatever YAML can hold: each loads or is one ConfigError,
    from a recipe file and as an override."""
    with tempfile.TemporaryDirectory() as folder:
        recipe = Path(folder) / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({"extends": "walker_walk", key: value}))
        for load in (lambda: load_config(str(recipe)), lambda: load_config("walker_walk",
                                                                           {key: value})):
            try:
                load()
            except ConfigError as exc:
                assert "\n" not in str(exc) and key in str(exc)
