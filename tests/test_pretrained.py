"""Zoo encoders as a Python user meets them: defaults, keywords, saving and logging, on the
encoders shipped in zoo/ (offline)."""

from __future__ import annotations

import logging

import pytest
import torch

from lever_transfer import ZooEncoder, list_encoders, load_encoder
from lever_transfer.errors import LeverError
from lever_transfer.zoo.package import read_package

SHIPPED = "hub:walker_stand-60k"


@pytest.fixture(autouse=True)
def empty_local_hub(isolated_hub):
    """hub: names resolve to the shipped zoo only, whatever the user's hub holds."""


def test_load_encoder_returns_a_frozen_module_in_eval_mode():
    encoder = load_encoder(SHIPPED)
    assert not encoder.training and encoder.frozen_layers == len(encoder.layer_names)
    assert not any(p.requires_grad for p in encoder.parameters())
    trainable = load_encoder(SHIPPED, freeze_layers=0).train()
    assert trainable.training and all(p.requires_grad for p in trainable.parameters())
    assert not ZooEncoder.from_pretrained(SHIPPED).training


def test_unknown_keywords_are_errors_not_ignored():
    with pytest.raises(TypeError, match="revison"):
        ZooEncoder.from_pretrained(SHIPPED, revison="main")  # type: ignore[call-arg]
    with pytest.raises(LeverError, match="disagree"):
        ZooEncoder.from_pretrained(SHIPPED, map_location="cuda", device="cpu")
    with pytest.raises(LeverError, match="pinned to 'abc1234' but revision='def5678'"):
        load_encoder(f"{SHIPPED}@abc1234", revision="def5678")


def test_revision_pins_a_shipped_name_by_sha256_prefix():
    sha = load_encoder(SHIPPED).config.sha256
    assert ZooEncoder.from_pretrained(SHIPPED, revision=sha[:12]).config.sha256 == sha
    with pytest.raises(LeverError, match="replaced"):  # the walker_stand-20k it replaced
        load_encoder("hub:walker_stand-20k", revision="e2431a64a3e0")


def test_save_pretrained_writes_its_three_files_and_touches_nothing_else(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "runs").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "runs" / "log.csv").write_text("step,return\n")
    encoder = load_encoder(SHIPPED)
    encoder.save_pretrained(folder)
    assert (folder / "notes.txt").read_text() == "mine"
    assert (folder / "runs" / "log.csv").read_text() == "step,return\n"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "notes.txt", "runs"]
    back = load_encoder(str(folder))
    for key, value in encoder.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key

    monkeypatch.chdir(folder / "runs")
    encoder.save_pretrained(".")  # had no folder name to make a temporary sibling from
    assert read_package(folder / "runs").config.sha256 == read_package(folder).config.sha256
    assert (folder / "runs" / "log.csv").is_file()


def test_the_library_logs_instead_of_printing(capsys, caplog):
    load_encoder(SHIPPED)
    assert capsys.readouterr().err == ""  # silent unless the user configures logging
    with caplog.at_level(logging.INFO, logger="lever_transfer"):
        load_encoder(SHIPPED)
    assert caplog.records[0].name == "lever_transfer"
    assert "walker_stand-60k -> shipped zoo" in caplog.messages[0]


def test_list_encoders_is_the_zoo_index_with_metadata():
    names = [entry["name"] for entry in list_encoders()]
    assert names == sorted(names) and {"qbert-100k", "walker_stand-60k"} <= set(names)
    walkers = list_encoders("walker_stand-*")
    assert [e["name"] for e in walkers] == [n for n in names if n.startswith("walker_stand-")]
    sixty = next(e for e in walkers if e["name"] == "walker_stand-60k")
    assert sixty["where"] == "shipped zoo" and sixty["source_task"] == "walker_stand"
    assert sixty["env_steps"] == 60000 and sixty["eval_return"] > 650
    assert list_encoders("nothing*") == []
