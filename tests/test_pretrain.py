"""Real tiny pretrain -> publish -> finetune runs through the command line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from lever_transfer.checkpoint import load_checkpoint
from lever_transfer.cli import main
from lever_transfer.config import load_config
from lever_transfer.run_dir import RunDir
from lever_transfer.zoo import hub
from lever_transfer.zoo.hub import shipped_zoo
from lever_transfer.zoo.package import read_package
from lever_transfer.zoo.transfer import frame_spacing_warning

from .conftest import as_sets, tiny_schedule

pytestmark = pytest.mark.slow  # real pretrain and finetune runs

# walker at action repeat 8: 125 agent steps (1000 env steps) per episode
SETS = as_sets(tiny_schedule(), leave_out=("steps", "freeze_at"))

HEAD_SIZED_SETS = as_sets(tiny_schedule(), leave_out=("steps", "freeze_at", "hidden_dim"))
# --transfer full takes the heads' size


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, [*args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, module_hub):
    """(the folder that holds the module's hub, the run, the sha256 of its first snapshot)."""
    root = module_hub.parent
    run = tmp_path_factory.mktemp("pretrain") / "run"
    # 125 agent steps, then resume the same run to 250: snapshots at 1k and 2k env steps
    invoke("pretrain", "walker_stand_drq", "--steps", "125 agent_steps", "--snapshot-every", "1k",
           "--out", str(run), "--no-progress", *SETS)
    first = read_package(root / "hub" / "walker_stand-1k").config.sha256
    output = invoke("pretrain", "walker_stand_drq", "--steps", "250 agent_steps",
                    "--snapshot-every", "1k", "--out", str(run), "--no-progress", *SETS)
    assert "resuming" in output
    return root, run, first


def test_pretrain_publishes_true_steps_and_resumes(pretrained):
    root, run, first = pretrained
    index = hub.read_index(root / "hub")
    assert sorted(index) == ["walker_stand-1k", "walker_stand-2k"]
    assert index["walker_stand-1k"]["sha256"] == first  # the resume did not rewrite it
    rows = RunDir(run).metrics()
    evals = {r["agent_steps"]: r for r in rows if r["kind"] == "eval"}
    assert sorted(evals) == [125, 250]
    for name, env_steps in (("walker_stand-1k", 1000), ("walker_stand-2k", 2000)):
        source = read_package(root / "hub" / name).config.source
        assert source["env_steps"] == env_steps and source["task"] == "walker_stand"
        # DrQ (walker_stand_drq): its 84-pixel encoders exercise finetune's spec handling
        assert source["algorithm"] == "DrQ" and source["agent_steps"] == env_steps // 8
        observation = read_package(root / "hub" / name).observation  # DrQ: 84 renders, no crop
        assert (observation.render_size, observation.crop_size) == (84, 84)
        assert observation.crop.startswith("none, the whole render")
        # the evaluation logged at the snapshot's step, everywhere the package states it
        logged = evals[env_steps // 8]
        mean, std = logged["eval_return"], logged["eval_return_std"]
        assert mean != 0 and (source["eval_return"], source["eval_return_std"]) == (mean, std)
        assert source["flops"] == logged["flops"] and source["eval_episodes"] == 1
        assert index[name]["eval_return"] == mean
        _, snapshot = load_checkpoint(RunDir(run).snapshots_dir / f"ckpt-{env_steps // 8:010d}")
        assert (snapshot["eval_return"], snapshot["eval_return_std"]) == (mean, std)
        card = (root / "hub" / name / "README.md").read_text()
        assert f"value: {mean:.2f} +/- {std:.2f}" in card  # the Hub's model-index entry
        assert f"publish time: {mean:.1f} ± {std:.1f} over 1 episodes" in card
        # the run's evaluations up to the snapshot, in the config and the card
        curve = source["curve"]
        assert [row["env_steps"] for row in curve] == [e * 8 for e in sorted(evals)
                                                        if e * 8 <= env_steps]
        assert curve[-1]["return"] == mean and curve[-1]["flops"] == logged["flops"]
        assert "## Learning curve of the run it comes from" in card
        assert f"| {env_steps:,} | {mean:.1f} ± {std:.1f} |" in card
        # what it cost in CPU time, beside wall time: the run's, and at each evaluation
        assert source["cpu_s"] == snapshot["cpu_s"] > 0 and curve[-1]["cpu_s"] == logged["cpu_s"]
        assert f"({snapshot['cpu_s'] / 3600:.2f} CPU-hours)" in card
        assert "| wall h | CPU h |" in card
    assert [r["agent_steps"] for r in rows if r["kind"] == "train"] == [125, 250]


def test_zoo_list_shows_the_snapshots(pretrained):
    output = invoke("zoo", "list")
    assert "walker_stand-2k" in output and "2,000" in output and "local hub" in output


@pytest.mark.parametrize("transfer, target, layers", [("full", "walker_walk", "all"),
                                                      ("encoder", "hopper_hop", "4")])
def test_finetune_from_a_published_snapshot(pretrained, tmp_path, transfer, target, layers):
    run = tmp_path / "ft"
    output = invoke("finetune", "--from", "hub:walker_stand-2k", "--to", target,
                    "--freeze-layers", layers, "--transfer", transfer, "--steps", "125 agent_steps",
                    "--out", str(run), "--no-progress", *SETS)
    assert f"transfer {transfer}" in output
    assert "warning" not in output  # source and target both at action repeat 8
    # the target (a SAC+CURL recipe: 84 crops of 100-pixel renders) reads the DrQ encoder's
    # whole 84-pixel renders, taken from the package as its architecture is; full transfer
    # trains the DrQ heads on as DrQ, new heads train with the target's own agent
    config = yaml.safe_load(RunDir(run).config_path.read_text())
    agent = "drq" if transfer == "full" else "sac_curl"
    assert (config["algorithm"], config["render_size"], config["crop_size"]) == (agent, 84, 84)
    rows = RunDir(run).metrics()
    freeze = [r for r in rows if r["kind"] == "freeze"][0]
    assert freeze["agent_steps"] == 0
    assert freeze["latent_replay"] == (layers == "all")  # conv features are bigger than pixels
    assert [r["agent_steps"] for r in rows if r["kind"] == "train"] == [125]


def test_a_set_that_contradicts_the_package_is_refused_in_one_line(pretrained, tmp_path):
    """What the weights fix comes from the package; a --set against it names what differs."""
    for extra, words in ((["--transfer", "full", "--set", "algorithm=sac_curl"], "sac_tanh heads"),
                         (["--set", "render_size=100"], "render_size 84 vs 100")):
        result = CliRunner().invoke(main, ["finetune", "--from", "hub:walker_stand-2k", "--to",
                                           "walker_walk", *extra, "--out", str(tmp_path / "x"),
                                           "--no-progress", *SETS])
        assert result.exit_code != 0 and words in result.output, result.output
        assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_finetune_from_the_shipped_encoder(tmp_path, isolated_hub):
    """The README's main command, shortened: task transfer from the encoder shipped in zoo/."""
    run = tmp_path / "ft"
    output = invoke("finetune", "--from", "hub:walker_stand-60k", "--to", "walker_walk",
                    "--transfer", "full", "--steps", "250 agent_steps", "--out", str(run),
                    "--no-progress", *HEAD_SIZED_SETS)
    assert "finetune from hub:walker_stand-60k (transfer full" in output
    # the shipped encoder learned at action repeat 4; this shortened run steps 8 at a time
    assert ("warning: encoder walker_stand-60k learned from frames 4 env steps apart (action "
            "repeat 4), this run steps 8 at a time" in output)
    assert "--set action_repeat=4 matches the source" in output
    rows = RunDir(run).metrics()
    assert [r["agent_steps"] for r in rows if r["kind"] == "train"] == [125, 250]
    assert all(r["phase"] == "latents" for r in rows if r["kind"] == "train")
    config = read_package(RunDir(run).encoder_dir).config
    assert config.source["task"] == "walker_walk"
    assert config.observation.action_repeat == 8  # the spec says its frame spacing


def test_an_encoder_pretrained_on_several_tasks_warns_at_a_tasks_other_spacing():
    """dmc-multi-atc-10k saw ball_in_cup_catch at action repeat 2, whose recipe now steps 4
    (CURL's); cheetah_run it saw at its own 4, and hopper_hop (held out) not at all."""
    package = read_package(shipped_zoo() / "dmc-multi-atc-10k")
    warning = frame_spacing_warning(package, load_config("ball_in_cup_catch"))
    assert warning and ("learned from ball_in_cup_catch's frames 2 env steps apart (action "
                        "repeat 2), this run steps 4 at a time") in warning
    assert frame_spacing_warning(package, load_config("cheetah_run")) is None
    assert frame_spacing_warning(package, load_config("hopper_hop")) is None


@pytest.mark.parametrize("source, design", [
    ("walker_stand-60k", ["--to", "hopper_hop", "--freeze-layers", "4"]),
    ("walker_stand-60k", ["--to", "walker_walk", "--transfer", "full"]),
    ("dmc-multi-atc-10k",
     ["--to", "cheetah_run", "--transfer", "encoder", "--freeze-layers", "all"]),
])
def test_the_designs_finetune_commands_run_offline_from_the_shipped_encoder(tmp_path, source,
                                                                            design, isolated_hub):
    """The commands the toolkit was designed around, and issue 37's from the multi-domain encoder,
    with the Hub unreachable (HF_HUB_OFFLINE=1, a fresh process): shortened to 125 agent steps,
    otherwise as typed."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LEVER_HUB": str(isolated_hub),
           "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    sets = SETS if "full" not in design else HEAD_SIZED_SETS
    out = subprocess.run([sys.executable, "-m", "lever_transfer.cli", "finetune", "--from",
                          f"hub:{source}", *design, "--steps", "125 agent_steps",
                          "--out", str(tmp_path / "run"), "--no-progress", *sets],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"{source} -> shipped zoo" in out.stderr  # the CLI shows where it resolved to
    rows = RunDir(tmp_path / "run").metrics()
    assert [r["agent_steps"] for r in rows if r["kind"] == "train"] == [125]


def test_publishing_on_snapshot_is_a_library_function(tmp_path, isolated_hub):
    """What ``pretrain`` does, from Python: a Trainer's events passed through publish_as_saved
    publish each snapshot as it is announced, and reach the caller unchanged."""
    from lever_transfer.config import load_config
    from lever_transfer.events import SnapshotSaved
    from lever_transfer.train import Trainer
    from lever_transfer.zoo.publishing import publish_as_saved, snapshot_name

    cfg = load_config("walker_walk", tiny_schedule(lever=False, steps="125 agent_steps",
                                                   snapshot_every="500", eval_every="500"))
    run = tmp_path / "run"
    seen, names = [], []
    for event in publish_as_saved(Trainer(cfg, run, progress=False).events(), run,
                                  say=lambda m: None):
        seen.append(type(event).__name__)
        if isinstance(event, SnapshotSaved):  # in the hub before the caller sees the event
            names.append(snapshot_name("walker_walk", event.env_steps))
            assert names[-1] in hub.read_index(isolated_hub)
    assert "Evaluated" in seen and len(names) == 2
    assert sorted(hub.read_index(isolated_hub)) == sorted(names)
