"""lever-transfer report on fixture metrics files: curves, freeze lines, seeds and the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from matplotlib.collections import PolyCollection

from lever_transfer.cli import main
from lever_transfer.config import load_config
from lever_transfer.report import group_runs, plot, read_run, summary

from .conftest import tiny_config


def fake_run(root: Path, name: str, lever: bool, seed: int, returns: list[float],
             flops_per_step: float, freeze_at: int | None = None,
             settings: dict | None = None, cpu_per_step: float | None = None) -> Path:
    """A run directory as train writes it: config.yaml and metrics.jsonl with evaluations every
    1000 env steps (and a freeze row)."""
    run = root / name
    run.mkdir()
    overrides = {"lever": lever, "seed": seed, **(settings or {})}
    config = load_config("walker_walk", overrides).to_dict()
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    rows = []
    for i, value in enumerate(returns, 1):
        steps = 1000 * i
        if freeze_at is not None and steps - 1000 < freeze_at <= steps:
            rows.append({"kind": "freeze", "env_steps": freeze_at, "agent_steps": freeze_at // 2,
                         "flops": int(freeze_at * flops_per_step), "replay_bytes": 10,
                         "wall_s": freeze_at / 100})
        rows.append({"kind": "train", "env_steps": steps, "agent_steps": steps // 2,
                     "flops": int(steps * flops_per_step), "episode_return": value,
                     "replay_bytes": 1000 * i, "wall_s": 10.0 * i})
        rows.append({"kind": "eval", "env_steps": steps, "agent_steps": steps // 2,
                     "flops": int(steps * flops_per_step), "eval_return": value,
                     "replay_bytes": 1000 * i, "wall_s": 10.0 * i})
    if cpu_per_step is not None:  # runs logged before metrics had cpu_s lack it
        rows = [{**r, "cpu_s": r["env_steps"] * cpu_per_step} for r in rows]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


@pytest.fixture
def runs(tmp_path):
    lever = [fake_run(tmp_path, f"lever-s{seed}", True, seed, [10 + seed, 50 + seed, 90 + seed],
                      flops_per_step=1e6, freeze_at=1500) for seed in range(3)]
    baseline = fake_run(tmp_path, "curl-s0", False, 0, [10, 40, 60, 80], flops_per_step=3e6)
    return lever, baseline


def test_seeds_are_one_setting_and_draw_one_curve_with_a_band_and_a_freeze_line(runs):
    lever, baseline = runs
    settings = group_runs([read_run(r) for r in [*lever, baseline]])
    assert [len(s.runs) for s in settings] == [3, 1]
    assert "LeVER" in settings[0].label and "LeVER" not in settings[1].label
    steps, flops, mean, std = settings[0].curve()
    assert list(mean) == [11, 51, 91] and std[0] == pytest.approx(0.8165, abs=1e-3)
    figure = plot(settings)
    assert len(figure.axes) == 4  # against env steps, FLOPs, wall-clock hours and CPU-hours
    for axis in figure.axes[:3]:
        curves = [line for line in axis.lines if line.get_marker() == "o"]
        freeze = [line for line in axis.lines if line.get_linestyle() == ":"]
        assert len(curves) == 2 and len(freeze) == 1  # the baseline has no freeze point
        assert sum(isinstance(c, PolyCollection) for c in axis.collections) == 1  # seeds band
    assert not figure.axes[3].lines  # these runs predate cpu_s: nothing to draw against it
    steps_line, flops_line, hours_line = ([line for line in axis.lines
                                           if line.get_linestyle() == ":"][0]
                                          for axis in figure.axes[:3])
    assert steps_line.get_xdata()[0] == 1500 and flops_line.get_xdata()[0] == 1500 * 1e6
    assert hours_line.get_xdata()[0] == pytest.approx(15 / 3600)  # Tf's wall time, in hours
    lever_hours = [line for line in figure.axes[2].lines if line.get_marker() == "o"][0]
    assert list(lever_hours.get_xdata()) == pytest.approx([10 / 3600, 20 / 3600, 30 / 3600])


def test_a_seed_that_ran_further_goes_on_alone_as_a_dashed_line(tmp_path):
    """The mean stops at the shortest seed; the longer seed's later evaluations are still drawn
    (dashed, from that seed's own last shared evaluation on), and report.md says how far each
    seed got."""
    short = fake_run(tmp_path, "s0", True, 0, [10, 20, 30], flops_per_step=1e6, cpu_per_step=0.1)
    long = fake_run(tmp_path, "s1", True, 1, [30, 40, 50, 60, 70], flops_per_step=1e6,
                    cpu_per_step=0.1)
    alone = fake_run(tmp_path, "other", False, 0, [1, 2], flops_per_step=3e6, cpu_per_step=0.1)
    settings = group_runs([read_run(r) for r in (short, long, alone)])
    figure = plot(settings)
    for axis in figure.axes:
        mean = [line for line in axis.lines if line.get_marker() == "o"][0]
        assert list(mean.get_ydata()) == [20, 30, 40]
        dashed = [line for line in axis.lines if line.get_linestyle() == "--"]
        assert len(dashed) == 1  # the single-seed setting has nothing beyond its own curve
        assert list(dashed[0].get_ydata()) == [50, 60, 70]
    steps_axis = figure.axes[0]
    dashed = [line for line in steps_axis.lines if line.get_linestyle() == "--"][0]
    assert list(dashed.get_xdata()) == [3000, 4000, 5000]
    assert "seed 1 alone past 3,000 env steps" in dashed.get_label()
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["report", str(short), str(long), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "(seed 0, evaluated to 3,000 env steps)" in text
    assert "(seed 1, evaluated to 5,000 env steps)" in text


def test_cpu_hours_panel_draws_each_setting_against_its_mean_cpu_time(tmp_path):
    """On a shared machine wall time overstates a run's cost; the fourth panel puts the curve
    at the seeds' mean CPU-hours (a setting that costs 3x per step lies 3x further right)."""
    cheap = [fake_run(tmp_path, f"cheap-s{seed}", True, seed, [10, 20], flops_per_step=1e6,
                      cpu_per_step=0.36 * (seed + 1)) for seed in range(2)]
    dear = fake_run(tmp_path, "dear-s0", False, 0, [10, 20], flops_per_step=3e6,
                    cpu_per_step=3 * 0.54)
    figure = plot(group_runs([read_run(r) for r in [*cheap, dear]]))
    cheap_line, dear_line = [line for line in figure.axes[3].lines if line.get_marker() == "o"]
    assert list(cheap_line.get_xdata()) == pytest.approx([0.15, 0.3])  # (360+720)/2 s per 1000
    assert list(dear_line.get_xdata()) == pytest.approx([0.45, 0.9])
    assert "CPU-hours" in figure.axes[3].get_xlabel()


def test_runs_that_differ_in_bookkeeping_alone_are_seeds_of_one_setting(tmp_path):
    """A `pretrain` baseline (snapshots, other checkpoint spacing, a Tf it never reaches) and a
    `train --no-lever` baseline of another seed learn the same way: one setting. LeVER runs
    with different Tf are two."""
    pretrain = fake_run(tmp_path, "a", False, 0, [1, 2], 1e6, settings={
        "snapshot_every": "500 agent_steps", "freeze_at": "100k agent_steps",
        "checkpoint_every": "2k agent_steps"})
    train = fake_run(tmp_path, "b", False, 1, [3, 4], 1e6, settings={"device": "cpu"})
    tf_1k, tf_2k = (fake_run(tmp_path, f"tf{tf}", True, 0, [1, 2], 1e6,
                             settings={"freeze_at": f"{tf} agent_steps"}) for tf in (1000, 2000))
    settings = group_runs([read_run(r) for r in (pretrain, train, tf_1k, tf_2k)])
    assert [len(s.runs) for s in settings] == [2, 1, 1]
    different_batch = fake_run(tmp_path, "c", False, 2, [5, 6], 1e6,
                               settings={"batch_size": 64})
    assert len(group_runs([read_run(r) for r in (pretrain, different_batch)])) == 2


def test_precision_is_part_of_the_setting_and_runs_from_before_it_were_float32(tmp_path):
    """bf16 and float32 runs of one recipe are two settings, the bf16 one labelled so; a run
    logged before the precision setting existed is a float32 seed."""
    fp32, bf16 = (fake_run(tmp_path, p, False, 0, [1, 2], 1e6, settings={"precision": p})
                  for p in ("fp32", "bf16"))
    old = fake_run(tmp_path, "old", False, 1, [3, 4], 1e6, settings={"precision": "fp32"})
    config = yaml.safe_load((old / "config.yaml").read_text())
    del config["precision"]
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    settings = group_runs([read_run(r) for r in (fp32, bf16, old)])
    assert [(s.label, len(s.runs)) for s in settings] == [("walker_walk CURL", 2),
                                                         ("walker_walk CURL (bf16)", 1)]


def test_finetunes_are_labelled_by_source_transfer_and_frozen_layers(tmp_path):
    """Figure 9(a) compares finetunes from one source that differ only in frozen layers: each
    curve's label says how many (not the run folder's name)."""
    finetunes = [fake_run(tmp_path, f"ft-{layers}", True, 0, [1, 2], 1e6, settings={
        "pretrained": "hub:walker_stand-60k", "transfer": "full", "freeze_layers": layers})
        for layers in (4, 1, "all")]
    labels = [s.label for s in group_runs([read_run(r) for r in finetunes])]
    assert labels == ["walker_walk from hub:walker_stand-60k (full, 4 layers frozen)",
                      "walker_walk from hub:walker_stand-60k (full, 1 layer frozen)",
                      "walker_walk from hub:walker_stand-60k (full, encoder frozen)"]


def test_summary_compares_at_a_return_and_a_flops_budget_every_setting_reaches(runs):
    lever, baseline = runs
    table = summary(group_runs([read_run(r) for r in [*lever, baseline]]))
    header, _, lever_row, baseline_row = table.splitlines()
    assert "FLOPs to reach 80.0" in header and "within 3e+09 FLOPs" in header
    assert "return at 3,000 env steps" in header  # the last evaluation both settings reached
    assert "| 3 | 91.0 ± 0.8 (at 3,000 env steps) | 3e+09 | 91.0 | 3e+09 | 91.0 |" in lever_row
    assert "| 1 | 80.0 (at 4,000 env steps) | 1.2e+10 | 60.0 | 1.2e+10 | 10.0 |" in baseline_row


def test_return_at_equal_env_steps_names_an_evaluation_a_resume_shifted(tmp_path):
    """A run stopped and resumed mid-episode evaluates at the next episode's end (3,400 here,
    not 3,000): the table compares it at 3,000 and says where it was measured."""
    shifted = fake_run(tmp_path, "shifted", False, 0, [1, 2, 3], 1e6)
    metrics = shifted / "metrics.jsonl"
    metrics.write_text(metrics.read_text().replace('"env_steps": 3000', '"env_steps": 3400'))
    plain = fake_run(tmp_path, "plain", True, 0, [5, 6, 7, 8], 1e6)
    settings = group_runs([read_run(r) for r in (shifted, plain)])
    rows = summary(settings).splitlines()
    assert "return at 3,000 env steps" in rows[0]
    assert "| 3.0 (at 3,400) |" in rows[2] and "| 7.0 |" in rows[3]
    far = summary(settings, at_env_steps=9000).splitlines()  # nobody evaluated near it
    assert "return at 9,000 env steps" in far[0]
    assert [row.split(" | ")[4] for row in far[2:]] == ["-", "-"]


def test_cpu_hours_are_the_seeds_mean_and_unknown_for_runs_without_cpu_s(tmp_path):
    seeds = [fake_run(tmp_path, f"s{seed}", False, seed, [1, 2], 1e6, cpu_per_step=1.8 * (1 + seed))
             for seed in (0, 1)]  # 1 and 2 CPU-hours at 2000 env steps
    older = fake_run(tmp_path, "old", True, 0, [1, 2], 1e6)
    table = summary(group_runs([read_run(r) for r in [*seeds, older]]))
    header, _, measured, unmeasured = table.splitlines()
    assert header.endswith("| wall h | CPU h |")
    assert measured.endswith("| 0.01 | 1.50 |") and unmeasured.endswith("| 0.01 | - |")


def test_report_command_writes_png_and_markdown(runs, tmp_path):
    lever, baseline = runs
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["report", *map(str, lever), str(baseline),
                                       "--out", str(out), "--at-flops", "2e9"])
    assert result.exit_code == 0, result.output
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "report.md").read_text()
    assert "return within 2e+09 FLOPs" in text and "(report.png)" in text


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code != 0 and "is not a run directory" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow  # a real run
def test_tensorboard_logs_the_metrics_file_columns_under_the_same_names(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lever_transfer.metrics import read_metrics
    from lever_transfer.train import Trainer

    cfg = tiny_config("atari:qbert", steps="300 agent_steps", freeze_at="200 agent_steps",
                      eval_every="300 agent_steps", tensorboard=True)
    Trainer(cfg, tmp_path, progress=False, say=lambda s: None).run()
    board = EventAccumulator(str(tmp_path / "tensorboard"))
    board.Reload()
    tags = set(board.Tags()["scalars"])
    assert {"eval_return", "episode_return", "flops", "update_ms", "replay_bytes"} <= tags
    evals = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "eval"]
    logged = board.Scalars("eval_return")
    assert [(e.step, e.value) for e in logged] == [(r["env_steps"], r["eval_return"])
                                                   for r in evals]
