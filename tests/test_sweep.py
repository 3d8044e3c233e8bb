"""lever-transfer sweep: seeds as separate runs, resumed or skipped when run again, one report."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lever_transfer.cli import main
from lever_transfer.errors import LeverError
from lever_transfer.sweep import parse_seeds
from lever_transfer.zoo import hub

from .conftest import as_sets, tiny_schedule

# the runs are subprocesses: precision fp32 gives the same labels on every CPU
TINY = ["--steps", "150 agent_steps", "--freeze-at", "120 agent_steps",
        *as_sets(tiny_schedule("atari:qbert", precision="fp32"), leave_out=("steps", "freeze_at"))]


@pytest.mark.slow
def test_sweep_runs_two_seeds_end_to_end_and_reports_them_as_one_setting(tmp_path):
    out = tmp_path / "sweep"
    runner = CliRunner()
    result = runner.invoke(main, ["sweep", "atari:qbert", "--seeds", "0-1", "--jobs", "2",
                                  "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    for seed in (0, 1):
        assert (out / f"atari-qbert-s{seed}" / "checkpoints" / "ckpt-0000000150").is_dir()
    report = (out / "report" / "report.md").read_text()
    assert "atari:qbert Rainbow+LeVER (Tf 120 agent steps) | 2 |" in report  # one setting
    assert (out / "report" / "report.png").stat().st_size > 1000
    again = runner.invoke(main, ["sweep", "atari:qbert", "--seeds", "0-1", "--out", str(out),
                                 *TINY])
    assert again.exit_code == 0 and again.output.count("finished earlier, skipped") == 2


@pytest.mark.slow
def test_a_publishing_sweep_pretrains_two_games_at_once_and_publishes_both(tmp_path,
                                                                            isolated_hub):
    out = tmp_path / "sweep"
    sets = TINY[4:]  # no --steps, no --freeze-at
    args = ["sweep", "atari_defaults", "--tasks", "atari:pong,atari:boxing", "--seeds", "0",
            "--jobs", "2", "--publish", "--steps", "150 agent_steps", "--out", str(out), *sets]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "publishing their snapshots" in result.output
    index = hub.read_index(isolated_hub)
    assert sorted(index) == ["boxing-150", "pong-150"]  # one snapshot each, at the last step
    assert index["pong-150"]["source_task"] == "atari:pong"
    for game in ("pong", "boxing"):
        config = yaml.safe_load((out / f"atari-{game}-s0" / "config.yaml").read_text())
        assert config["lever"] is False  # a source: trained without LeVER's freeze
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and again.output.count("finished earlier, skipped") == 2


@pytest.mark.slow
def test_a_transfer_sweep_finetunes_every_task_and_seed_from_one_encoder(tmp_path):
    """``sweep --from``: what issue 37's transfer table needs (tasks x seeds from one encoder)
    in one command, resumed and reported like any sweep."""
    out = tmp_path / "sweep"
    sets = TINY[4:]  # no --steps, no --freeze-at: finetune freezes from step 0
    args = ["sweep", "atari:alien", "--from", "hub:qbert-100k", "--tasks",
            "atari:alien,atari:pong", "--seeds", "0", "--jobs", "2", "--steps",
            "150 agent_steps", "--out", str(out), *sets]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "finetuning from hub:qbert-100k" in result.output
    for game in ("alien", "pong"):
        run = out / f"atari-{game}-s0"
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert (config["task"], config["pretrained"], config["transfer"],
                config["freeze_layers"]) == (f"atari:{game}", "hub:qbert-100k", "encoder", "all")
        assert (run / "checkpoints" / "ckpt-0000000150").is_dir()
    assert (out / "report" / "report.md").is_file()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and again.output.count("finished earlier, skipped") == 2


@pytest.mark.parametrize("extra, words", [
    (["--freeze-layers", "4"], "add --from hub:NAME"),
    (["--from", "hub:qbert-100k", "--publish"], "drop --freeze-at, --no-lever and --publish"),
    (["--from", "hub:qbert-100kk"], "qbert-100k"),  # an unknown encoder, with the near name
    (["--from", "hub:qbert-100k", "--tasks", "atari:alien,walker_walk"], "walker_walk"),
])
def test_a_bad_transfer_sweep_fails_in_one_line_before_any_run(tmp_path, extra, words):
    result = CliRunner().invoke(main, ["sweep", "atari:alien", *extra,
                                       "--out", str(tmp_path / "s")])
    assert result.exit_code != 0 and words in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "s").exists()


def test_publish_refuses_the_freeze_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["sweep", "atari:qbert", "--publish", "--freeze-at", "1k",
                                       "--out", str(tmp_path / "s")])
    assert result.exit_code != 0 and "without LeVER's freeze" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("text, seeds", [("0-4", [0, 1, 2, 3, 4]), ("0,3,7", [0, 3, 7]),
                                         ("0-2,9", [0, 1, 2, 9]), ("5", [5])])
def test_seed_ranges(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a-b", "3-1", "1,1", "-2"])
def test_bad_seed_ranges_are_one_line(text):
    with pytest.raises(LeverError, match="distinct non-negative seeds"):
        parse_seeds(text)


def test_bad_sweeps_fail_before_any_run(tmp_path):
    result = CliRunner().invoke(main, ["sweep", "walker_walk", "--tasks", "walker_wlak",
                                       "--out", str(tmp_path / "s")])
    assert result.exit_code != 0 and "walker_walk" in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_ray_backend_runs_every_run_as_a_ray_task_and_reports_them(tmp_path):
    import ray

    out = tmp_path / "sweep"
    result = CliRunner().invoke(main, ["sweep", "atari:qbert", "--seeds", "0-1", "--backend",
                                       "ray", "--cpus-per-run", "1", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    for seed in (0, 1):
        assert (out / f"atari-qbert-s{seed}" / "checkpoints" / "ckpt-0000000150").is_dir()
        log = (out / f"atari-qbert-s{seed}.log").read_text()
        assert log.startswith("sweep: Ray task on node ") and "1 CPU(s)" in log
    assert "atari:qbert Rainbow+LeVER (Tf 120 agent steps) | 2 |" in (
        out / "report" / "report.md").read_text()
    assert not ray.is_initialized()  # the Ray instance the sweep started is shut down
    again = CliRunner().invoke(main, ["sweep", "atari:qbert", "--seeds", "0-1", "--backend",
                                      "ray", "--out", str(out), *TINY])
    assert again.exit_code == 0 and again.output.count("finished earlier, skipped") == 2


def test_ray_backend_without_ray_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = CliRunner().invoke(main, ["sweep", "atari:qbert", "--seeds", "0", "--backend",
                                       "ray", "--out", str(tmp_path / "s"), *TINY])
    assert result.exit_code != 0 and "pip install 'lever-transfer[ray]'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "s").exists()


def test_unreachable_ray_cluster_fails_at_once_in_one_line(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    result = CliRunner().invoke(main, ["sweep", "atari:qbert", "--seeds", "0", "--backend",
                                       "ray", "--out", str(tmp_path / "s"), *TINY])
    assert result.exit_code != 0 and "no Ray cluster answers there" in result.output
    assert "ray start --head" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


@pytest.fixture
def ray_cluster(tmp_path):
    """A Ray cluster as a user starts one, `ray start --head` (Ray 2.60+: token authentication
    on), in its own processes; its address, stopped after the test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray = str(Path(sys.executable).parent / "ray")  # the ray CLI of this environment
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats"],
                   check=True, capture_output=True, timeout=180)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=180)


@pytest.mark.slow
def test_a_sweep_on_a_cluster_from_ray_start_needs_token_auth_and_says_so(tmp_path,
                                                                          ray_cluster):
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "lever_transfer.cli", "sweep", "atari:qbert", "--seeds",
               "0-1", "--backend", "ray", "--cpus-per-run", "1", "--out", str(out), *TINY]
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env["RAY_ADDRESS"] = ray_cluster
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "set RAY_AUTH_MODE=token" in refused.stderr
    assert "Traceback" not in refused.stderr and not out.exists()
    done = subprocess.run(command, env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for seed in (0, 1):
        assert (out / f"atari-qbert-s{seed}" / "checkpoints" / "ckpt-0000000150").is_dir()
        assert (out / f"atari-qbert-s{seed}.log").read_text().startswith(
            "sweep: Ray task on node ")
    assert (out / "report" / "report.md").is_file()


def test_gpu_requests_belong_to_the_ray_backend(tmp_path):
    result = CliRunner().invoke(main, ["sweep", "atari:qbert", "--seeds", "0", "--gpus-per-run",
                                       "0.5", "--out", str(tmp_path / "s"), *TINY])
    assert result.exit_code != 0 and "use it with --backend ray" in result.output
    assert not (tmp_path / "s").exists()


def test_parallel_runs_split_the_cores(monkeypatch):
    from lever_transfer.sweep import threads_per_run

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert threads_per_run(1) is None and threads_per_run(2) == 4 and threads_per_run(16) == 1
