"""The linear probe: its ridge and R^2 on synthetic data, then real probes of the shipped zoo."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from lever_transfer.cli import main
from lever_transfer.errors import LeverError
from lever_transfer.probe import (
    GroupScore,
    ProbeResult,
    contiguous_blocks,
    folds,
    held_out_r2,
    probe,
    r2_per_dimension,
)
from lever_transfer.zoo import hub
from lever_transfer.zoo import publishing as zoo
from lever_transfer.zoo.card import model_card
from lever_transfer.zoo.encoder import load_encoder
from lever_transfer.zoo.package import read_package

EPISODES = np.repeat(np.arange(4), 250)  # the default budget's shape: 4 episodes of 250 steps


def linear_targets(features: int, seed: int = 0, noise: float = 0.01):
    """Features [1000, features] and 5 targets that are a linear function of them plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((len(EPISODES), features)).astype(np.float32)
    y = x @ rng.standard_normal((features, 5)) + noise * rng.standard_normal((len(EPISODES), 5))
    return x, y


def test_r2_is_sklearns_definition_and_undefined_for_a_constant_dimension():
    truth = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 3.0], [3.0, 2.0, 3.0]])
    predicted = np.array([[1.5, 2.0, 3.0], [2.0, 1.0, 3.0], [2.5, 2.0, 3.0]])
    # 1 - 0.5 / 2; a constant column has nothing to explain, predicted exactly or not
    r2 = r2_per_dimension(truth, predicted)
    assert r2[0] == pytest.approx(0.75) and np.isnan(r2[1:]).all()


def test_a_constant_target_is_shown_as_undefined_not_as_a_perfect_fit():
    """A reward random actions never earn used to read R^2 1.000 (predicting the constant)."""
    x, y = linear_targets(30)
    r2 = held_out_r2(x, {"state": y, "reward": np.zeros((len(y), 1))}, EPISODES)
    assert np.isnan(r2["reward"]).all() and r2["state"].min() > 0.99
    result = ProbeResult("ball_in_cup_catch", "hub:x", "fc", 1000, 4, 4, False, 0, 1.0,
                         (GroupScore("position", 4, 0.8, 0.1),
                          GroupScore("reward", 1, float("nan"), float("nan"))), 0.8, 0.1)
    assert result.table().splitlines()[-2].split() == ["reward", "1", "-", "-"]
    recorded = json.loads(json.dumps(result.to_dict(), allow_nan=False))  # valid JSON: null
    assert recorded["groups"][1]["encoder_r2"] is None
    config = dataclasses.replace(read_package(hub.shipped_zoo() / "walker_stand-60k").config,
                                 probes=(recorded,))
    assert "| reward | 1 | - | - |" in model_card("walker_stand-60k", config)


@pytest.mark.parametrize("features", [30, 3000])  # the feature and the sample Gram matrix
def test_features_that_hold_the_targets_linearly_score_near_one(features):
    x, y = linear_targets(30)
    if features > 30:  # a wide map (as a conv layer's) that holds the 30 informative features
        x = x @ np.random.default_rng(1).standard_normal((30, features)).astype(np.float32)
    r2 = held_out_r2(x, {"state": y}, EPISODES)["state"]
    assert r2.shape == (5,) and r2.min() > 0.99


def test_shuffled_targets_score_near_zero():
    x, y = linear_targets(30)
    shuffled = np.random.default_rng(2).permutation(y)
    r2 = held_out_r2(x, {"state": shuffled}, EPISODES)["state"]
    assert r2.mean() < 0.05 and r2.max() < 0.05


@settings(max_examples=15, deadline=None)
@given(scale=st.floats(1e-3, 1e3), shift=st.floats(-1e3, 1e3))
def test_r2_ignores_the_units_of_features_and_targets(scale, shift):
    x, y = linear_targets(10, noise=1.0)
    segments = EPISODES[::4]
    x, y = x[::4], y[::4]
    base = held_out_r2(x, {"y": y}, segments)["y"]
    moved = held_out_r2(x * scale, {"y": y * scale + shift}, segments)["y"]
    assert moved == pytest.approx(base, abs=1e-3)


def test_folds_test_whole_segments_once_and_validate_on_training_ones():
    segments = np.repeat(np.arange(6), 10)
    segments[:3] = -1  # left out
    tested = np.zeros(len(segments), int)
    for train, validation, test in folds(segments):
        assert not (train & test).any() and (validation <= train).all() and validation.any()
        assert set(segments[test]).isdisjoint(segments[train])
        tested += test
    assert (tested == (segments >= 0)).all()


def test_one_episode_is_cut_into_blocks_without_shared_frames():
    ids = contiguous_blocks(np.zeros(100, int), 4, 3)
    assert list(np.unique(ids)) == [-1, 0, 1, 2, 3]
    assert list(ids[24:29]) == [0, -1, -1, -1, 1]
    assert list(contiguous_blocks(np.repeat([0, 1], 50), 4, 3)[48:52]) == [1, 1, 2, 2]  # new ep


# ---------------------------------------------------------------------------- real probes

@pytest.fixture(scope="module")
def walker_probe(module_hub):
    """One probe of the shipped encoder: one episode of random actions (about 10 s)."""
    return probe("hub:walker_stand-60k", "walker_walk", episodes=1)


@pytest.mark.slow
def test_the_shipped_encoder_knows_the_walkers_pose_better_than_random_weights(walker_probe):
    groups = {g.name: g for g in walker_probe.groups}
    assert list(groups) == ["orientations", "height", "velocity", "reward"]
    assert [groups[n].dims for n in groups] == [14, 1, 9, 1]
    assert walker_probe.layer == "fc" and walker_probe.steps == 250  # a whole episode at repeat 4
    assert walker_probe.action_repeat == 4
    for group in groups.values():
        assert np.isfinite([group.encoder_r2, group.random_r2]).all()
    for name in ("height", "orientations"):  # seed 0: 0.74 vs 0.04, 0.23 vs -0.01
        assert groups[name].encoder_r2 > groups[name].random_r2 + 0.1
    assert walker_probe.overall_encoder_r2 > walker_probe.overall_random_r2
    json.dumps(walker_probe.to_dict(), allow_nan=False)


@pytest.mark.slow
def test_cli_prints_the_table_and_writes_the_same_result(walker_probe, tmp_path, isolated_hub):
    out = tmp_path / "probe.json"
    result = CliRunner().invoke(main, ["probe", "hub:walker_stand-60k", "--task", "walker_walk",
                                       "--episodes", "1", "--json", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "group" in result.output and "random-init R^2" in result.output
    assert "height" in result.output and "state (overall)" in result.output
    written = json.loads(out.read_text())
    expected = walker_probe.to_dict()
    del written["seconds"], expected["seconds"]
    assert written == json.loads(json.dumps(expected))  # seeded: the same rollout and scores


@pytest.mark.slow
def test_the_packages_policy_drives_the_rollout(tmp_path, isolated_hub):
    result = probe("hub:walker_stand-60k", "walker_walk", episodes=3, episode_steps=8,
                   policy=True, layer="conv4")
    assert result.policy and result.steps == 24 and result.layer == "conv4"
    assert all(np.isfinite(g.encoder_r2) for g in result.groups)
    headless = tmp_path / "headless"
    load_encoder("hub:walker_stand-60k").save_pretrained(headless)
    with pytest.raises(LeverError, match="without heads"):
        probe(str(headless), "walker_walk", episodes=3, episode_steps=8, policy=True)


@pytest.mark.parametrize("args, message", [
    (["hub:walker_stand-60k", "--task", "atari:qbert"],
     "the probe reads DeepMind Control physics state, and task atari:qbert is Atari"),
    (["hub:qbert-100k", "--task", "walker_walk"],
     "the probe reads DeepMind Control physics state, and encoder qbert-100k reads Atari"),
    (["hub:walker_stand-60k", "--task", "walker_walk", "--layer", "conv9"],
     "layer 'conv9' is not one of this encoder's layers: 1..5 or a name (conv1, "),
    (["hub:walker_stand-60k", "hub:walker_stand-20k", "--task", "walker_walk", "--record"],
     "--record, --policy and --layer probe one encoder; leave them out to compare several"),
    (["hub:walker_stand-60k", "--task", " , "], "--task is empty; name a DMC task"),
])
def test_errors_are_one_line(args, message, isolated_hub):
    result = CliRunner().invoke(main, ["probe", *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {message}") and result.output.count("\n") == 1


@pytest.mark.slow
def test_record_keeps_the_result_in_config_card_index_and_zoo_list(walker_probe, tmp_path,
                                                                   isolated_hub):
    zoo.pull("hub:walker_stand-60k", say=lambda m: None)  # a local copy to record into
    sha = read_package(isolated_hub / "walker_stand-60k").config.sha256
    result = CliRunner().invoke(main, ["probe", "hub:walker_stand-60k", "--task", "walker_walk",
                                       "--episodes", "1", "--record"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    package = read_package(isolated_hub / "walker_stand-60k", sha)  # weights untouched
    (recorded,) = package.config.probes
    assert recorded["overall_encoder_r2"] == pytest.approx(walker_probe.overall_encoder_r2)
    card = (package.path / "README.md").read_text()
    assert card == model_card("walker_stand-60k", package.config) and "## Linear probe" in card
    assert f"**{walker_probe.overall_encoder_r2:.3f}** overall" in card
    entry = hub.read_index(isolated_hub)["walker_stand-60k"]
    assert entry["probe"]["tasks"] == ["walker_walk"] and entry["sha256"] == sha
    listed = CliRunner().invoke(main, ["zoo", "list"]).output
    assert "probe R^2" in listed
    assert f"{walker_probe.overall_encoder_r2:.2f} ({walker_probe.overall_random_r2:.2f}) " \
           f"walker_walk" in listed
    folder = tmp_path / "folder"
    load_encoder("hub:walker_stand-60k").save_pretrained(folder)
    refused = CliRunner().invoke(main, ["probe", str(folder), "--task", "walker_walk",
                                        "--episodes", "1", "--record"])
    assert refused.exit_code == 2 and "--record keeps the result beside a hub:NAME" in \
        refused.output


def _result(task: str, r2: float) -> dict:
    groups = (GroupScore("position", 8, r2, 0.1), GroupScore("velocity", 9, r2 / 2, 0.05))
    return ProbeResult(task, "hub:walker_stand-60k", "fc", 1000, 4, 4, False, 0, 60.0, groups,
                       r2, 0.1).to_dict()


def test_several_tasks_are_kept_one_result_each(isolated_hub):
    """A multi-domain encoder's card and ``zoo list`` show a probe per task; probing a task
    again replaces its result in place and keeps the others."""
    zoo.pull("hub:walker_stand-60k", say=lambda m: None)
    sha = read_package(isolated_hub / "walker_stand-60k").config.sha256
    zoo.record_probe("walker_stand-60k", [_result("walker_walk", 0.3),
                                          _result("cheetah_run", 0.5)], isolated_hub)
    zoo.record_probe("walker_stand-60k", [_result("walker_walk", 0.4)], isolated_hub)
    package = read_package(isolated_hub / "walker_stand-60k", sha)  # weights untouched
    assert [(p["task"], p["overall_encoder_r2"]) for p in package.config.probes] == [
        ("walker_walk", 0.4), ("cheetah_run", 0.5)]
    card = (package.path / "README.md").read_text()
    assert card == model_card("walker_stand-60k", package.config)
    assert "| cheetah_run | **state (overall)** | | **0.500** | 0.100 |" in card
    assert "--task walker_walk,cheetah_run" in card and "| | velocity | 9 | 0.200 | 0.050 |" in card
    entry = hub.read_index(isolated_hub)["walker_stand-60k"]
    assert entry["probe"] == {"tasks": ["walker_walk", "cheetah_run"], "r2": 0.45,
                              "random_init_r2": 0.1}
    listed = CliRunner().invoke(main, ["zoo", "list"]).output
    assert "0.45 (0.10) mean of 2 tasks" in listed
