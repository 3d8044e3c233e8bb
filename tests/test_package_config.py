"""The typed package config: parsed once, every older package's defaults filled in one place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lever_transfer.zoo.config import (
    DEFAULT_ACTION_REPEAT,
    PackageConfig,
    PackageError,
    parse_config,
    upgrade,
)

ZOO = Path(__file__).resolve().parents[1] / "zoo"


def shipped(name: str) -> dict:
    return json.loads((ZOO / name / "config.json").read_text())


@pytest.mark.parametrize("name", ["walker_stand-60k", "qbert-100k"])
def test_shipped_configs_parse_typed(name):
    config = parse_config(shipped(name), name)
    assert isinstance(config, PackageConfig)
    assert config.obs_shape == config.observation.shape
    assert [layer.index for layer in config.layers] == list(range(1, len(config.layers) + 1))
    assert config.observation.action_repeat is not None and config.task
    assert config.to_json() == dict(config.document) and config.to_json() is not config.document
    with pytest.raises(AttributeError):
        config.sha256 = "x"  # frozen


def test_an_old_package_is_upgraded_in_one_place():
    """What packages written before each field existed lack, ``upgrade`` fills in."""
    document = shipped("walker_stand-60k")
    source = document["source"]
    repeat = document["observation"].pop("action_repeat", None) or source["action_repeat"]
    document.pop("stored_dtype", None)
    document["heads"] = {**document.get("heads", {"action_dim": 6, "hidden_dim": 1024})}
    document["heads"].pop("kind", None)
    source.pop("render_quality", None)
    config = parse_config(document)
    assert config.stored_dtype == "float32" and config.heads["kind"] == "sac"
    assert config.observation.action_repeat == repeat and config.render_quality == "paper"
    assert upgrade(config.to_json()) == config.to_json()  # idempotent


def test_a_single_recorded_probe_becomes_a_list_of_one():
    """Packages recorded one probe as ``probe``; several tasks are kept as ``probes``."""
    document = shipped("walker_stand-60k")
    single = document.get("probe") or (document.get("probes") or [None])[0]
    assert single is not None and single["task"] == "walker_walk"
    document.pop("probes", None)
    document["probe"] = single
    config = parse_config(document)
    assert config.probes == (single,) and "probe" not in config.document
    document.pop("probe")
    assert parse_config(document).probes == ()


def test_frame_spacing_falls_back_to_the_recipe_then_the_default():
    document = shipped("walker_stand-60k")
    document["observation"].pop("action_repeat", None)
    document["source"].pop("action_repeat", None)
    recipe_repeat = document["source"]["recipe"]["action_repeat"]
    assert parse_config(document).observation.action_repeat == recipe_repeat
    del document["source"]["recipe"]
    assert parse_config(document).observation.action_repeat == DEFAULT_ACTION_REPEAT
    document["source"]["kind"] = "offline"  # several tasks, each at its own spacing
    assert parse_config(document).observation.action_repeat is None


@pytest.mark.parametrize("damage, words", [
    (lambda d: d.pop("sha256"), "lacks 'sha256'"),
    (lambda d: d.update(format="other/1"), "has format"),
    (lambda d: d["observation"].pop("frame_stack"), "lacks frame_stack"),
    (lambda d: d["observation"].update(crop_size=99), "does not match the encoder's input"),
    (lambda d: d.update(stored_dtype="int8"), "stored_dtype"),
    (lambda d: d["architecture_args"].update(feature_dim=10**9), "layer sizes"),
    (lambda d: d.update(num_parameters="7e9"), "not a count"),
    (lambda d: d.update(layers=[{"index": "x"}]), "layers or observation spec unreadable"),
])
def test_a_bad_config_is_one_line_naming_the_file(damage, words):
    document = shipped("walker_stand-60k")
    damage(document)
    with pytest.raises(PackageError) as refused:
        parse_config(document, "zoo/x/config.json")
    message = str(refused.value)
    assert words in message and message.startswith("zoo/x/config.json") and "\n" not in message
