"""The command line: one-line errors for mistakes, real output for real commands."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from lever_transfer.cli import main


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
    out = subprocess.run([sys.executable, "-m", "lever_transfer.cli", "recipes"],
                         capture_output=True, text=True, check=True).stdout
    assert "walker_walk_memory" in out and "figure 5" in out
