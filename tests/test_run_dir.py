"""RunDir, the run folder's layout: read back from a real tiny run, written by its own writers,
and a broken config.yaml reported in one line that names the folder."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lever_transfer.checkpoint import load_checkpoint
from lever_transfer.cli import main
from lever_transfer.errors import LeverError
from lever_transfer.run_dir import RunDir
from lever_transfer.steps import StepCount
from lever_transfer.zoo.package import read_package

from .conftest import tiny_config


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A real Rainbow+LeVER run of 300 agent steps: frozen at 150, snapshots every 100 (at the
    first game end after each). The tests that take it are marked slow."""
    from lever_transfer.train import Trainer

    cfg = tiny_config("atari:qbert", steps="300 agent_steps", freeze_at="150 agent_steps",
                      snapshot_every="100 agent_steps", batch_size=8, hidden_dim=32,
                      eval_epsilon=0.0, tensorboard=True)
    path = tmp_path_factory.mktemp("runs") / "qbert"
    Trainer(cfg, path, progress=False, say=lambda s: None).run()
    return cfg, RunDir(path)


@pytest.mark.slow
def test_a_real_run_reads_back_through_its_run_dir(real_run):
    cfg, run = real_run
    assert run.has_config() and run.config_path.parent == run.path
    assert cfg.precision == "auto"  # the run records what it resolved to (tests: float32)
    assert run.read_config().to_dict() == cfg.replace(precision="fp32").to_dict()
    assert run.holds_run() and run.latest_step() == 300
    assert run.latest_checkpoint().parent == run.checkpoints_dir
    assert load_checkpoint(run.latest_checkpoint(), part="counters")[1]["agent_steps"] == 300
    assert [p.parent for p in run.snapshots()] == [run.snapshots_dir] * 3
    steps = [load_checkpoint(p)[1]["agent_steps"] for p in run.snapshots()]  # at game ends
    assert len(steps) == 3 and steps == sorted(steps) and steps[-1] == 300
    rows = run.metrics()
    assert {"train", "eval", "freeze"} <= {r["kind"] for r in rows}
    assert max(r["agent_steps"] for r in rows) == 300 and run.metrics_path.is_file()
    assert read_package(run.encoder_dir).config.frozen_layers > 0  # written at Tf
    assert any(p.name.startswith("events.") for p in run.tensorboard_dir.iterdir())
    assert str(run) == str(run.path) and RunDir(run) == run  # a RunDir wraps a RunDir too


@pytest.mark.slow
def test_snapshots_are_packaged_into_the_run_dir_then_published(real_run, tmp_path):
    from lever_transfer.zoo.publishing import publish_run_snapshots

    _, run = real_run
    names = publish_run_snapshots(run.path, root=tmp_path / "hub", say=lambda s: None)
    steps = [load_checkpoint(p)[1]["env_steps"] for p in run.snapshots()]
    assert names == [f"qbert-{n}" for n in steps]
    assert sorted(p.name for p in run.packages_dir.iterdir()) == names


def test_a_folder_without_a_run(tmp_path):
    run = RunDir(tmp_path / "empty")
    assert not run.has_config() and not run.holds_run()
    assert run.latest_checkpoint() is None and run.latest_step() is None
    assert run.snapshots() == [] and run.metrics() == []
    with pytest.raises(LeverError, match="is not a run directory") as error:
        run.read_config()
    assert str(run.path) in str(error.value) and "\n" not in str(error.value)


def test_writers_round_trip_and_prune(tmp_path, small_config):
    run = RunDir(tmp_path / "run")
    cfg = small_config(seed=3)
    run.write_config(cfg)
    run.write_config(cfg.replace(seed=4))  # replaced atomically: no temporary left behind
    assert run.read_config().seed == 4 and list(run.path.iterdir()) == [run.config_path]
    for step in (10, 20, 30):
        run.save_checkpoint(step, {"step": step})
        run.save_snapshot(step, {"step": step})
    run.save_checkpoint(30, {"step": 31})  # the same step again replaces it
    assert load_checkpoint(run.latest_checkpoint())[1]["step"] == 31 and run.latest_step() == 30
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["LATEST", "ckpt-0000000030"]
    assert [load_checkpoint(p)[1]["step"] for p in run.snapshots()] == [10, 20, 30]  # all kept


def test_overrides_are_typed_as_on_the_command_line(tmp_path, small_config):
    run = RunDir(tmp_path)
    run.write_config(small_config())
    cfg = run.read_config({"steps": "600k", "eval_episodes": "3"})
    assert cfg.steps == StepCount(600_000, "env_steps") and cfg.eval_episodes == 3
    with pytest.raises(LeverError, match="--set"):
        run.read_config({"eval_episodes": "many"})


BROKEN = {"not YAML": "task: [walker_walk\n", "not a mapping": "- 1\n- 2\n",
          "empty": "", "unknown key": "batch_sze: 32\n", "bad value": "batch_size: -3\n"}


@pytest.mark.parametrize("text", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_config_is_one_line_naming_the_folder(tmp_path, text):
    folder = tmp_path / "broken-run"
    run = RunDir(folder)
    run.config_path.parent.mkdir()
    run.config_path.write_text(text)
    with pytest.raises(LeverError) as error:
        run.read_config()
    assert str(folder) in str(error.value) and "\n" not in str(error.value)
    for args in (["resume", str(folder)], ["eval", str(folder)]):
        result = CliRunner().invoke(main, args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and str(folder) in lines[0], args
