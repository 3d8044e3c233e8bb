"""lever-transfer benchmark atari100k: the reference table, human-normalised scores and rliable's
aggregates against values computed by hand on a small table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from lever_transfer.benchmark import (
    aggregates,
    final_scores,
    human_normalised,
    references,
    score_matrix,
)
from lever_transfer.cli import main
from lever_transfer.config import load_config
from lever_transfer.errors import LeverError


def atari_run(root: Path, name: str, task: str, returns: list[float]) -> Path:
    """A run directory as train writes it: config.yaml, and evaluations every 50K agent steps."""
    run = root / name
    run.mkdir(parents=True)
    config = load_config(task, {"seed": 0}).to_dict()
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [{"kind": "eval", "env_steps": 50_000 * i, "agent_steps": 50_000 * i, "flops": i,
             "eval_return": value, "eval_return_std": 1.0, "wall_s": 1.0, "cpu_s": 1.0}
            for i, value in enumerate(returns, 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_the_reference_table_reproduces_the_published_der_aggregates():
    """26 games; data-efficient Rainbow's HNS mean 0.285 and median 0.161 over them, as the
    papers that tabulate it (SPR, A-LIX) print; 2 games above human."""
    table = references()
    assert len(table) == 26 and table["atari:bank_heist"].game == "BankHeist"
    der = np.array([r.normalise(r.der) for r in table.values()])
    assert der.mean() == pytest.approx(0.2854, abs=1e-4)
    assert np.median(der) == pytest.approx(0.1614, abs=1e-4)
    assert int((der > 1).sum()) == 2


def test_human_normalised_score_by_hand():
    assert human_normalised("atari:alien", 589.0) == pytest.approx((589.0 - 227.8) / 6899.9)
    assert human_normalised("atari:pong", -20.7) == pytest.approx(0.0)
    assert human_normalised("atari:pong", 14.6) == pytest.approx(1.0)
    assert human_normalised("walker_walk", 500.0) is None


def test_scores_iqm_and_table_against_hand_computed_values(tmp_path):
    """Four games, two seeds each: 8 HNS values. The IQM drops the lowest and highest quarter
    (2 each) and averages the middle 4; the per-game score is the seeds' mean of their final
    evaluations (an earlier evaluation does not count)."""
    finals = {"atari:pong": [-20.7, -3.05],          # HNS 0.0, 0.5
              "atari:boxing": [6.1, 12.1],           # 0.5, 1.0
              "atari:breakout": [1.7, 30.5],         # 0.0, 1.0
              "atari:freeway": [2.96, 5.92]}         # 0.1, 0.2
    runs = [atari_run(tmp_path / "runs", f"{task[6:]}-s{seed}", task, [999.0, score])
            for task, scores in finals.items() for seed, score in enumerate(scores)]
    per_game = final_scores(runs)
    assert per_game == finals
    matrix = score_matrix(per_game, list(finals))
    np.testing.assert_allclose(np.sort(matrix.ravel()), [0, 0, 0.1, 0.2, 0.5, 0.5, 1, 1],
                               atol=1e-9)
    result = aggregates({"ours": matrix}, reps=200)["ours"]
    assert result["IQM"][0] == pytest.approx((0.1 + 0.2 + 0.5 + 0.5) / 4)
    assert result["Median"][0] == pytest.approx(np.median([0.25, 0.75, 0.5, 0.15]))  # per game
    assert result["Mean"][0] == pytest.approx(3.3 / 8)
    assert result["Optimality gap"][0] == pytest.approx((1 + 1 + 0.9 + 0.8 + 0.5 + 0.5) / 8)
    for point, low, high in result.values():
        assert low <= point <= high

    out = tmp_path / "bench"
    cli = CliRunner().invoke(main, ["benchmark", "atari100k", str(tmp_path / "runs"),
                                    "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    md = (out / "benchmark.md").read_text()
    assert "| Pong | 2 | -11.9 ± 8.8 | -19.3 |" in md  # mean and spread over the two seeds
    assert "| DER (published) |" in md and "IQM" in md
    csv_rows = (out / "benchmark.csv").read_text().splitlines()
    assert csv_rows[0].startswith("game,seeds,ours") and len(csv_rows) == 5
    assert (out / "aggregates.png").stat().st_size > 1000


def test_a_run_of_another_task_is_refused_in_one_line(tmp_path):
    run = tmp_path / "walker"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(load_config("walker_walk", {}).to_dict()))
    (run / "metrics.jsonl").write_text(json.dumps(
        {"kind": "eval", "env_steps": 1, "agent_steps": 1, "flops": 1, "eval_return": 1.0}) + "\n")
    with pytest.raises(LeverError, match="not one of the 26 Atari-100k games"):
        final_scores([run])
