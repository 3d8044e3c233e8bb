"""lever-transfer collect: real DMC rollouts into shards, deterministic from the seed, resumed
after a stop, and refused in one line when truncated or altered."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lever_transfer.cli import main
from lever_transfer.collect import MANIFEST, DatasetError, load_dataset

pytestmark = pytest.mark.slow

ARGS = ["cartpole_swingup,walker_walk", "--episodes", "2", "--episode-steps", "12",
        "--no-progress"]


def collect(out: Path, *extra: str) -> str:
    result = CliRunner().invoke(main, ["collect", *ARGS, "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return result.output


def shas(out: Path) -> dict[str, str]:
    manifest = json.loads((out / MANIFEST).read_text())
    return {name: entry["sha256"] for name, entry in manifest["shards"].items()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "ds"
    output = collect(out, "--seed", "3")
    assert "2 task(s) x 2 episodes = 52 frames" in output and "under a minute" in output
    return out


def test_episodes_hold_frames_actions_rewards_and_states(dataset):
    episodes = load_dataset(dataset)
    assert [e.task for e in episodes] == ["cartpole_swingup"] * 2 + ["walker_walk"] * 2
    walker = episodes[2]
    assert walker.frames.shape == (13, 3, 100, 100) and walker.frames.dtype == np.uint8
    assert walker.actions.shape == (12, 6) and walker.rewards.shape == (12,)
    assert set(walker.states) == {"orientations", "height", "velocity"}
    assert all(len(v) == 13 for v in walker.states.values())
    first = walker.stacked(0)  # the reset frame, stacked three times as the env does
    assert first.shape == (9, 100, 100) and np.array_equal(first[:3], first[6:])
    assert np.array_equal(walker.stacked(5)[6:], walker.frames[5])
    assert np.abs(walker.actions).max() <= 1.0
    manifest = json.loads((dataset / MANIFEST).read_text())["shards"]
    assert [manifest[f"walker_walk/ep-0000{i}.npz"]["exploration"] for i in (0, 1)] == [
        "uniform", "ou"]  # mixed: episodes alternate


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(dataset, tmp_path):
    again = tmp_path / "again"
    collect(again, "--seed", "3")
    assert shas(again) == shas(dataset)
    other = tmp_path / "other"
    collect(other, "--seed", "4")
    assert not set(shas(other).values()) & set(shas(dataset).values())


def test_a_stopped_collection_continues_with_the_missing_episodes_only(dataset, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    for name in shas(dataset):  # as a collection killed before its last episode leaves it
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_bytes((dataset / name).read_bytes())
    manifest = json.loads((dataset / MANIFEST).read_text())
    last = "walker_walk/ep-00001.npz"
    del manifest["shards"][last]
    (out / last).unlink()
    (out / MANIFEST).write_text(json.dumps(manifest))
    kept = (out / "cartpole_swingup/ep-00000.npz").stat().st_mtime_ns
    output = collect(out, "--seed", "3")
    assert "1 of 4 episodes to go" in output
    assert shas(out) == shas(dataset)
    assert (out / "cartpole_swingup/ep-00000.npz").stat().st_mtime_ns == kept


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_dataset_is_refused_in_one_line_and_collect_repairs_it(dataset, tmp_path,
                                                                         damage):
    out = tmp_path / "ds"
    for name in [*shas(dataset), MANIFEST]:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes((dataset / name).read_bytes())
    shard = out / "walker_walk/ep-00000.npz"
    data = bytearray(shard.read_bytes())
    if damage == "truncate":
        shard.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))
    else:
        os.remove(shard)
    with pytest.raises(DatasetError) as error:
        load_dataset(out)
    message = str(error.value)
    assert "\n" not in message and "walker_walk/ep-00000.npz" in message
    assert ("is missing" if damage == "delete" else "truncated or altered") in message
    assert ("lever-transfer collect cartpole_swingup,walker_walk --episodes 2 --seed 3 "
            "--exploration mixed --episode-steps 12 --out") in message  # the same dataset again
    assert "1 of 4 episodes to go" in collect(out, "--seed", "3")
    assert shas(out) == shas(dataset) and len(load_dataset(out)) == 4


def test_other_settings_into_the_same_folder_are_refused(dataset, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / MANIFEST).write_text((dataset / MANIFEST).read_text())
    result = CliRunner().invoke(main, ["collect", *ARGS, "--seed", "5", "--out", str(out)])
    assert result.exit_code != 0 and "seed 3 there, 5 here" in result.output
    assert "Traceback" not in result.output


def test_the_action_repeat_is_recorded_and_an_override_regenerates_an_older_dataset(dataset,
                                                                                   tmp_path):
    """A recipe's action repeat may change (ball_in_cup_catch went from 2 to CURL's 4): the
    manifest records each task's, so such a change cannot mix into a dataset, and
    ``--action-repeat TASK=N`` regenerates one collected under the older recipe."""
    recorded = json.loads((dataset / MANIFEST).read_text())["settings"]["action_repeat"]
    assert recorded == {"cartpole_swingup": 8, "walker_walk": 2}
    out = tmp_path / "ds"
    collect(out, "--seed", "3", "--action-repeat", "walker_walk=4")
    settings = json.loads((out / MANIFEST).read_text())["settings"]
    assert settings["action_repeat"] == {"cartpole_swingup": 8, "walker_walk": 4}
    same, other = shas(out), shas(dataset)
    assert [same[n] == other[n] for n in sorted(same)] == [True, True, False, False]
    again = CliRunner().invoke(main, ["collect", *ARGS, "--seed", "3", "--out", str(out)])
    assert again.exit_code != 0 and "'walker_walk': 4} there" in again.output
    (out / "walker_walk/ep-00001.npz").unlink()
    with pytest.raises(DatasetError, match="--action-repeat walker_walk=4 --out"):
        load_dataset(out)
    for bad in ("walker_walk", "walker_walk=0", "hopper_hop=2"):
        result = CliRunner().invoke(main, ["collect", *ARGS, "--action-repeat", bad,
                                           "--out", str(tmp_path / "bad")])
        assert result.exit_code != 0 and "expected TASK=N" in result.output
        assert "Traceback" not in result.output


POLICY = ["walker_walk", "--episodes", "1", "--episode-steps", "6", "--exploration", "policy",
          "--policy", "hub:walker_stand-60k", "--no-progress"]


def test_a_zoo_policy_acts_with_its_noise_deterministically(tmp_path):
    from lever_transfer.collect import read_manifest
    from lever_transfer.evaluate import package_actor
    from lever_transfer.zoo.hub import resolve

    def run(out: Path, noise: str) -> list:
        result = CliRunner().invoke(main, ["collect", *POLICY, "--policy-noise", noise,
                                           "--out", str(out)])
        assert result.exit_code == 0, result.output
        return load_dataset(out)

    exact, noisy = run(tmp_path / "exact", "0"), run(tmp_path / "noisy", "0.3")
    package = resolve("hub:walker_stand-60k", say=lambda m: None).package
    actor = package_actor(package, "hub:walker_stand-60k", "walker_walk", 2, "fp32")
    policy = np.stack([actor(exact[0].stacked(t)) for t in range(6)])
    np.testing.assert_allclose(exact[0].actions, policy, atol=1e-6)  # noise 0: the policy itself
    assert 0.1 < np.std(noisy[0].actions[0] - actor(noisy[0].stacked(0))) < 0.6
    run(tmp_path / "again", "0.3")
    assert shas(tmp_path / "again") == shas(tmp_path / "noisy")
    policy_settings = read_manifest(tmp_path / "noisy")["settings"]["policy"]
    assert policy_settings == {"source": "hub:walker_stand-60k", "noise": 0.3,
                               "sha256": package.config.sha256}


@pytest.mark.parametrize("args, says", [
    (["hopper_hop", "--exploration", "policy", "--policy", "hub:walker_stand-60k"],
     "acts in 6 dimensions and hopper_hop takes 4"),
    (["walker_walk", "--exploration", "policy", "--policy", "hub:qbert-100k"],
     "not the 3 stacked 100px RGB renders"),
    (["walker_walk", "--exploration", "policy", "--policy", "hub:dmc-multi-atc-10k"],
     "without heads: it cannot act"),
    (["walker_walk", "--exploration", "policy"], "needs --policy REFERENCE"),
    (["walker_walk", "--policy", "hub:walker_stand-60k"], "only with --exploration policy"),
])
def test_a_policy_that_cannot_act_is_refused_in_one_line(tmp_path, args, says):
    result = CliRunner().invoke(main, ["collect", *args, "--episodes", "1", "--episode-steps",
                                       "2", "--no-progress", "--out", str(tmp_path / "ds")])
    assert result.exit_code != 0 and says in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "ds" / MANIFEST).exists()


def test_a_policy_plan_round_trips_through_its_manifest_and_command():
    from lever_transfer.collect import Plan

    plain = Plan(("walker_walk",), 3, 1, "mixed", None)
    assert "policy" not in plain.settings()  # datasets collected before policies still match
    assert plain.describe_exploration() == "mixed"
    plan = Plan(("walker_walk", "walker_run"), 3, 1, "policy", None, (), "hub:walker_stand-60k",
                0.3, "ab" * 32)
    again = Plan.of(plan.settings())
    assert again.settings() == plan.settings()
    assert (again.policy, again.policy_noise, again.policy_sha256) == (
        "hub:walker_stand-60k", 0.3, "ab" * 32)
    assert ("--exploration policy --policy hub:walker_stand-60k --policy-noise 0.3 --out d"
            in plan.command(Path("d")))
    assert plan.describe_exploration() == "policy hub:walker_stand-60k + N(0, 0.3)"
