"""The command line: one-line errors for mistakes, real output for real commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lever_transfer.cli import main
from lever_transfer.run_dir import RunDir

from .conftest import tiny_config


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("args, expected", [
    (["train", "walker_wlk"], "did you mean 'walker_walk'"),
    (["train", "walker_walk", "--set", "batch_sze=32"], "did you mean 'batch_size'"),
    (["train", "walker_walk", "--set", "batch_size=-3"], "batch_size"),
    (["train", "walker_walk", "--freeze-at", "soon"], "soon"),
    (["train", "walker_walk", "--freeze-layers", "7"], "freeze"),
    (["train", "walker_walk", "--replay-memory", "lots"], "memory"),
    (["resume", "/nonexistent/run"], "not a run directory"),
])
def test_mistakes_are_one_line_errors(args, expected):
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]


def test_malformed_recipe_file(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("task: walker_walk\nbatch_size: [1, 2\n")
    result = run("train", str(recipe))
    assert result.exit_code == 2 and "bad.yaml" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_flops_prints_table_2(tmp_path):
    result = run("flops", "cartpole_swingup", "--no-update")
    assert result.exit_code == 0, result.output
    assert "encoder:conv1" in result.output and "4.36e+06" in result.output
    assert "critic:fc1" in result.output and "actor:fc4" in result.output


def test_console_script_is_installed():
    """The ``lever-transfer`` entry point the install put beside this interpreter, run as is."""
    script = Path(sys.executable).parent / "lever-transfer"
    assert script.is_file() and os.access(script, os.X_OK), f"{script} is not installed"
    out = subprocess.run([str(script), "recipes"], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    assert "walker_walk_memory" in out and "figure 5" in out


# ---------------------------------------------------------------- paths no other test takes:
# eval hub:NAME and its errors, --device cuda without CUDA, zoo publish, tasks, report targets

def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def qbert_runs(tmp_path_factory):
    """Two seeds of a real tiny Rainbow baseline, each evaluated a few times: a pretraining that
    kept snapshots (not published) and a plain run (no snapshots) of the same setting. The tests
    that take it are marked slow."""
    from lever_transfer.train import Trainer

    root = tmp_path_factory.mktemp("qbert-runs")
    runs = []
    for seed, snapshots in ((0, {"snapshot_every": "100 agent_steps"}), (1, {})):
        cfg = tiny_config("atari:qbert", steps="300 agent_steps", eval_every="100 agent_steps",
                          batch_size=8, hidden_dim=32, eval_epsilon=0.0, lever=False, seed=seed,
                          **snapshots)
        runs.append(Trainer(cfg, root / f"qbert-s{seed}", progress=False,
                            say=lambda s: None).run())
    return runs


@pytest.mark.slow  # a whole game of Qbert
def test_eval_plays_the_shipped_qbert_encoder_with_its_heads(isolated_hub):
    import re

    result = run("eval", "hub:qbert-100k", "--episodes", "1")
    assert result.exit_code == 0, result.output
    assert "evaluating hub:qbert-100k -> shipped zoo" in result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("atari:qbert: return ")]
    numbers = [float(x) for x in re.findall(r"-?\d+\.\d", line)]
    mean, std, low, high = numbers
    assert std == 0.0 and mean == low == high and "over 1 episodes" in line
    # the package's own heads play: it scored 915 at 100k steps, while fresh heads on the same
    # encoder score 0-25 on these evaluation seeds
    assert mean >= 300 and mean % 25 == 0  # Q*bert scores in multiples of 25


def _publish_rainbow_package(hub_root, tmp_path, name: str, with_heads: bool, recipe: bool):
    import gymnasium as gym

    from lever_transfer.agents import make_agent
    from lever_transfer.config import load_config
    from lever_transfer.zoo import publishing as zoo
    from lever_transfer.zoo.package import write_package

    cfg = load_config("atari:qbert", {"hidden_dim": 32, "device": "cpu"})
    agent = make_agent(cfg, (4, 84, 84), gym.spaces.Discrete(6))
    config = zoo.package_config(cfg, 6, agent_steps=1, flops=0, eval_return=None,
                                eval_return_std=None, wall_s=0.0, with_heads=with_heads)
    if not recipe:
        del config["source"]["recipe"]
    tensors = agent.package_tensors(agent.state_dict(), agent.num_layers, with_heads=with_heads)
    folder = write_package(tmp_path / "packages" / name, tensors, config)
    zoo.publish(folder, name, hub_root, say=lambda m: None)


@pytest.mark.parametrize("name, with_heads, recipe, expected", [
    ("no-heads", False, True, "hub:no-heads is an encoder without heads: it cannot act. "
                              "Finetune it on a task first (lever-transfer finetune --from "
                              "hub:no-heads --to TASK)"),
    ("no-recipe", True, False, "hub:no-recipe does not record the recipe it was trained with"),
    ("qbert-100kk", None, None, "unknown encoder 'qbert-100kk'; did you mean qbert-100k?"),
], ids=["without-heads", "without-recipe", "unknown-name"])
def test_eval_of_a_hub_package_that_cannot_act_is_one_line(tmp_path, isolated_hub, name,
                                                           with_heads, recipe, expected):
    if with_heads is not None:
        _publish_rainbow_package(isolated_hub, tmp_path, name, with_heads, recipe)
    line = one_error_line(run("eval", f"hub:{name}", "--episodes", "1"))
    assert expected in line


@pytest.mark.parametrize("command", [["train", "quickstart"], ["pretrain", "walker_stand"],
                                     ["eval", "hub:qbert-100k"]], ids=lambda c: c[0])
def test_device_cuda_without_cuda_is_refused_in_one_line_before_any_run_directory(
        command, tmp_path, monkeypatch, isolated_hub):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a GPU machine too
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # train and pretrain default to runs/... under it
    line = one_error_line(run(*command, "--device", "cuda"))
    assert "--device cuda" in line and "use --device cpu" in line
    assert list(cwd.iterdir()) == [] and not isolated_hub.exists()


@pytest.mark.slow
def test_zoo_publish_packages_every_snapshot_and_hub_names_resolve_to_them(
        qbert_runs, isolated_hub):
    import torch

    from lever_transfer.checkpoint import load_checkpoint
    from lever_transfer.zoo import hub
    from lever_transfer.zoo.encoder import load_encoder

    pretrain = qbert_runs[0]
    result = run("zoo", "publish", str(pretrain))
    assert result.exit_code == 0, result.output
    snapshots = RunDir(pretrain).snapshots()
    assert len(snapshots) >= 2
    names = []
    for snapshot in snapshots:
        _, state = load_checkpoint(snapshot)
        env_steps = state["env_steps"]
        assert env_steps < 1000  # named with the exact count: qbert-165
        name = f"qbert-{env_steps}"
        names.append(name)
        assert f"published {name} -> {isolated_hub / name}" in result.output
        encoder = load_encoder(f"hub:{name}")
        assert "local hub" in hub.resolve(f"hub:{name}", say=lambda m: None).source
        for key, value in encoder.encoder.state_dict().items():
            assert torch.equal(value, state["weights"][f"encoder.{key}"]), (name, key)
        assert encoder.metadata["env_steps"] == env_steps
        assert encoder.metadata["eval_return"] == state["eval_return"]
    assert sorted(hub.read_index(isolated_hub)) == sorted(names)
    # the last snapshot, evaluated from the hub, plays as the run measured it (eval_epsilon 0)
    result = run("eval", f"hub:{names[-1]}", "--episodes", "1")
    assert result.exit_code == 0, result.output
    assert f"atari:qbert: return {state['eval_return']:.1f} ± 0.0 over 1 episodes" \
        in result.output


@pytest.mark.slow
def test_zoo_publish_of_a_run_without_snapshots_is_one_line(qbert_runs, isolated_hub):
    line = one_error_line(run("zoo", "publish", str(qbert_runs[1])))
    assert "has no snapshots yet" in line and not isolated_hub.exists()


def test_tasks_lists_every_dmc_task_then_every_atari_game():
    from ale_py.roms import get_all_rom_ids

    from lever_transfer.envs import check_task
    from lever_transfer.envs.rendering import import_suite

    result = run("tasks")
    assert result.exit_code == 0, result.output
    names = result.output.split()
    dmc = [n for n in names if not n.startswith("atari:")]
    games = [n.removeprefix("atari:") for n in names if n.startswith("atari:")]
    assert names == dmc + [f"atari:{g}" for g in games]  # DMC first, then Atari
    assert dmc == sorted(f"{d}_{t}" for d, t in import_suite().ALL_TASKS)
    assert games == sorted(get_all_rom_ids())
    assert len(set(names)) == len(names) and len(dmc) >= 28 and len(games) >= 26
    paper_dmc = {"cartpole_swingup", "cheetah_run", "finger_spin", "reacher_easy", "walker_walk",
                 "walker_stand", "hopper_hop", "ball_in_cup_catch"}
    paper_atari = {"alien", "amidar", "bank_heist", "crazy_climber", "krull", "private_eye",
                   "qbert", "seaquest"}
    assert paper_dmc <= set(dmc) and paper_atari <= set(games)
    assert [check_task(n) for n in names] == names  # every listed name is a valid task


def _evals(run_dir) -> list[tuple[float, float]]:
    return [(r["flops"], r["eval_return"]) for r in RunDir(run_dir).metrics()
            if r["kind"] == "eval"]


def _mean_curve(runs) -> list[tuple[float, float]]:
    """(FLOPs, return) of a setting: the k-th evaluations of its seeds averaged, up to the
    shortest seed."""
    evals = [_evals(r) for r in runs]
    n = min(len(e) for e in evals)
    return [(sum(e[k][0] for e in evals) / len(evals), sum(e[k][1] for e in evals) / len(evals))
            for k in range(n)]


@pytest.mark.slow
def test_report_target_return_column_is_the_flops_of_the_first_evaluation_reaching_it(
        qbert_runs, tmp_path):
    curve = _mean_curve(qbert_runs)  # the two seeds are one setting
    assert len(curve) >= 2
    returns = [value for _, value in curve]
    for target in (min(returns), max(returns), returns[-1], max(returns) + 1):
        out = tmp_path / f"report-{target}"
        result = run("report", *map(str, qbert_runs), "--out", str(out),
                     "--target-return", repr(target))
        assert result.exit_code == 0, result.output
        table = [line.split("|")[1:-1] for line in (out / "report.md").read_text().splitlines()
                 if line.startswith("| ")]
        header, (row,) = [c.strip() for c in table[0]], table[1:]
        column = header.index(f"FLOPs to reach {target:.1f}")
        assert row[header.index("seeds")].strip() == "2"
        first = next((flops for flops, value in curve if value >= target), None)
        assert row[column].strip() == ("not reached" if first is None else f"{first:.3g}")
