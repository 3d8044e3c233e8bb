"""Run folders written by lever-transfer 0.1 (commit 65d03e8, before the redesign) keep working.

``tests/data/runs-0.1`` holds two tiny real runs made by that code: walker_walk with SAC+CURL
(frozen at agent step 60, latent replay) and Qbert with Rainbow and prioritized replay (frozen at
80). Their config.yaml is flat (every algorithm field at the top level), their checkpoints name
the replay's init arguments as that code did, and their ``encoder/`` packages are the old format.
Continuing them to more steps, reading their config and loading their packages must work.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from lever_transfer.cli import main
from lever_transfer.zoo.encoder import load_encoder

OLD_RUNS = Path(__file__).parent / "data" / "runs-0.1"
RUNS = {"walker_walk-sac_curl": 120, "qbert-rainbow-prioritized": 150}


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # real runs
@pytest.mark.parametrize("name", sorted(RUNS))
def test_an_old_run_continues_to_more_steps(tmp_path, name):
    run_dir = tmp_path / name
    shutil.copytree(OLD_RUNS / name, run_dir)
    done = RUNS[name]
    result = CliRunner().invoke(main, ["resume", str(run_dir), "--no-progress",
                                       "--set", f"steps={done + 30} agent_steps"])
    assert result.exit_code == 0, result.output
    assert f"resuming at agent step {done}" in result.output
    rows = _rows(run_dir)
    assert max(r["agent_steps"] for r in rows) == done + 30
    train = [r for r in rows if r["kind"] == "train" and r["agent_steps"] > done]
    assert train and all(r["phase"] == "latents" for r in train)  # frozen before, still frozen
    assert (run_dir / "checkpoints" / f"ckpt-{done + 30:010d}").is_dir()


@pytest.mark.parametrize("name", sorted(RUNS))
def test_an_old_run_package_loads(name):
    encoder = load_encoder(str(OLD_RUNS / name / "encoder"))
    spec = encoder.observation_spec
    size = spec["render_size"]
    obs = torch.zeros((1, spec["channels"] * spec["frame_stack"], size, size), dtype=torch.uint8)
    assert torch.isfinite(encoder(obs)).all()
