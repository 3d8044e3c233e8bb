"""SIGKILL at random moments (updates, the freeze-time conversion, checkpoint writes, startup):
every checkpoint left behind loads, holds what its counters say, and resuming reaches the same
final step with each metrics row logged once. KILL_POINTS (default 6) and KILL_SEED widen it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from lever_transfer.checkpoint import latest_checkpoint, load_checkpoint
from lever_transfer.replay import LatentReplay, PixelReplay

# Atari checkpoints wait for a game's end (untrained Qbert: near agent steps 390 and 720), so
# the run is long enough to hold two before the last, with Tf between them
STEPS = 800
TRAIN = ["train", "atari:qbert", "--steps", f"{STEPS} agent_steps", "--freeze-at",
         "500 agent_steps", "--set", "init_steps=50 agent_steps", "--set",
         "checkpoint_every=30 agent_steps", "--set", "eval_every=1M agent_steps", "--set",
         "eval_episodes=1", "--no-progress"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lever_transfer.cli", *args]


def check_checkpoint(run) -> int:
    """The latest checkpoint loads and its replay matches its counters; returns its step."""
    path = latest_checkpoint(run / "checkpoints")
    if path is None:
        return 0
    step, state = load_checkpoint(path)
    assert state["counters"]["agent_steps"] == step
    kind = {"PixelReplay": PixelReplay, "LatentReplay": LatentReplay}[state["replay"]["kind"]]
    replay = kind(**state["replay"]["init"])
    replay.load_state_dict(state["replay"]["state"])
    assert replay.total >= step  # one entry per observation seen, episode starts included
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith("ckpt-")
                and not (p / "state.json").is_file()]  # no half-written checkpoint is visible
    return step


def test_sigkill_anywhere_then_resume_finishes_the_same_run(tmp_path):
    rng = random.Random(int(os.environ.get("KILL_SEED", "0")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    steps_seen = []
    for _ in range(int(os.environ.get("KILL_POINTS", "6"))):
        args = (cli("resume", str(run), "--no-progress") if latest_checkpoint(run / "checkpoints")
                else cli(*TRAIN, "--out", str(run)))
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=env)
        time.sleep(rng.uniform(1.5, 12.0))
        process.kill()
        process.wait()
        steps_seen.append(check_checkpoint(run))
    assert steps_seen == sorted(steps_seen)  # progress is never lost
    args = (cli("resume", str(run), "--no-progress") if latest_checkpoint(run / "checkpoints")
            else cli(*TRAIN, "--out", str(run)))
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env)
    assert check_checkpoint(run) == STEPS
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r["agent_steps"] for r in rows if r["kind"] == "train"]
    assert train == sorted(set(train)) and train[-1] == STEPS  # each row once, to the end
    assert sum(r["kind"] == "freeze" for r in rows) == 1
    assert np.all(np.diff([r["flops"] for r in rows]) >= 0)


def test_sigint_writes_a_checkpoint_then_stops_and_resume_finishes(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(cli(*TRAIN, "--out", str(run)), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _train_rows(run):
        time.sleep(0.2)  # wait until it is training
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    assert "interrupted: writing a checkpoint" in output and "Traceback" not in output
    stopped = _train_rows(run)[-1]
    assert stopped["interrupted"] and check_checkpoint(run) == stopped["agent_steps"] < STEPS
    subprocess.run(cli("resume", str(run), "--no-progress"), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    assert check_checkpoint(run) == STEPS and _train_rows(run)[-1]["agent_steps"] == STEPS


def _train_rows(run) -> list[dict]:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [row for row in map(json.loads, lines) if row["kind"] == "train"]
