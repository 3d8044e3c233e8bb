"""SIGKILL at chosen and at random moments: during updates before the first checkpoint and after
one, in the middle of the freeze-time conversion, in the latent phase after a checkpoint of the
latent replay, and at random times (which can land at startup or in a checkpoint write). Every
checkpoint left behind loads and holds what its counters say, and resuming reaches the same final
step with each metrics row logged once. KILL_POINTS (default 2 random kills) and KILL_SEED
widen it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lever_transfer.checkpoint import load_checkpoint
from lever_transfer.replay import LatentReplay, PixelReplay
from lever_transfer.run_dir import RunDir
from lever_transfer.zoo.package import read_package

from .conftest import as_sets, tiny_schedule

pytestmark = pytest.mark.slow  # real runs in subprocesses, killed and resumed

# Atari checkpoints wait for a game's end (untrained Qbert: near agent steps 300 and 660), so
# the run is long enough to hold one before Tf and one after it, and to go on for a few seconds
# after that one: the last kill must land there (at 800 steps a loaded CI machine finished first)
STEPS, TF = 1100, 500
TRAIN = ["train", "atari:qbert", "--steps", f"{STEPS} agent_steps", "--freeze-at",
         f"{TF} agent_steps",
         *as_sets(tiny_schedule("atari:qbert", init_steps="50 agent_steps",
                                checkpoint_every="30 agent_steps"),
                  leave_out=("steps", "freeze_at")),
         "--no-progress"]

# The command line with the conversion wrapped: once a chunk is converted and the next one is
# being encoded, it writes the file HOLD_CONVERSION_AT names and waits there to be killed.
HOLD_CONVERSION = textwrap.dedent("""
    import json, math, os, sys, time
    import lever_transfer.lever as lever
    from lever_transfer.cli import main

    convert = lever.convert_to_latent

    def convert_and_hold(pixel, encode, *args, **kwargs):
        chunks, calls = math.ceil(pixel.entries_to_convert().size / 100), []
        def encode_and_hold(stacks):
            calls.append(len(stacks))
            if len(calls) == 2:
                marker = os.environ["HOLD_CONVERSION_AT"]
                with open(marker + ".tmp", "w") as f:
                    json.dump({"encoding_chunk": 2, "chunks": chunks, "sizes": calls}, f)
                os.replace(marker + ".tmp", marker)
                time.sleep(600)
            return encode(stacks)
        return convert(pixel, encode_and_hold, *args, **kwargs)

    lever.convert_to_latent = convert_and_hold
    sys.argv[0] = "lever-transfer"
    main()
""")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lever_transfer.cli", *args]


def check_checkpoint(run) -> int:
    """The latest checkpoint loads and its replay matches its counters; returns its step."""
    path = RunDir(run).latest_checkpoint()
    if path is None:
        return 0
    step, state = load_checkpoint(path)
    assert state["counters"]["agent_steps"] == step
    kind = {"PixelReplay": PixelReplay, "LatentReplay": LatentReplay}[state["replay"]["kind"]]
    assert kind is (LatentReplay if step > TF else PixelReplay)
    replay = kind(**state["replay"]["init"])
    replay.load_state_dict(state["replay"]["state"])
    assert replay.total >= step  # one entry per observation seen, episode starts included
    assert not [p for p in RunDir(run).checkpoints_dir.iterdir() if p.name.startswith("ckpt-")
                and not (p / "state.json").is_file()]  # no half-written checkpoint is visible
    return step


def checkpoint_step(run) -> int:
    """The step of the latest checkpoint, 0 if none (without loading it)."""
    return RunDir(run).latest_step() or 0


def rows(run) -> list[dict]:
    """The metrics rows written so far (a line still being written is left out)."""
    path = RunDir(run).metrics_path
    lines = path.read_text().split("\n")[:-1] if path.exists() else []
    return [json.loads(line) for line in lines]


def logged_after(run, step: int) -> bool:
    """Whether an episode that ended after agent step ``step`` is in the metrics."""
    return any(r["kind"] == "train" and r["agent_steps"] > step for r in rows(run))


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended ({process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def kill(process: subprocess.Popen) -> None:
    """SIGKILL, and prove it landed: the process was still running, so it died of it."""
    process.kill()
    assert process.wait() == -signal.SIGKILL, "the run had ended before the kill"


def test_sigkill_anywhere_then_resume_finishes_the_same_run(tmp_path):
    rng = random.Random(int(os.environ.get("KILL_SEED", "0")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    marker = tmp_path / "converting"
    steps_seen, started = [], []

    def command(hold_conversion: bool = False) -> list[str]:
        args = (["resume", str(run), "--no-progress"] if RunDir(run).holds_run()
                else [*TRAIN, "--out", str(run)])
        return [sys.executable, "-c", HOLD_CONVERSION, *args] if hold_conversion else cli(*args)

    def start(hold_conversion: bool = False) -> subprocess.Popen:
        started.append(subprocess.Popen(command(hold_conversion), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL,
                                        env={**env, "HOLD_CONVERSION_AT": str(marker)}))
        return started[-1]

    def killed(process: subprocess.Popen) -> None:
        kill(process)
        steps_seen.append(check_checkpoint(run))

    try:
        # 1. in the first updates, once an episode is logged, before any checkpoint exists
        process = start()
        wait_for(lambda: logged_after(run, 0), process, "first episode")
        assert checkpoint_step(run) == 0
        killed(process)
        assert steps_seen == [0]
        # 2. in the pixel phase, after the first checkpoint and an episode logged past it
        process = start()
        wait_for(lambda: logged_after(run, checkpoint_step(run) or STEPS), process,
                 "an episode after the first checkpoint")
        assert not [r for r in rows(run) if r["kind"] == "freeze"]
        killed(process)
        assert 0 < steps_seen[-1] < TF
        # 3. in the middle of the conversion at Tf: chunk 1 converted, the next one being encoded
        process = start(hold_conversion=True)
        wait_for(marker.exists, process, "conversion")
        held = json.loads(marker.read_text())
        killed(process)
        assert held["chunks"] > held["encoding_chunk"] == 2 and held["sizes"] == [100, 100]
        assert not [r for r in rows(run) if r["kind"] == "freeze"]  # logged once it has finished
        assert steps_seen[-1] < TF  # a pixel checkpoint is what the resume finds
        # 4. at random moments (startup, updates, the conversion, checkpoint writes), each run
        # stopped at the latest once a checkpoint after Tf exists (the next kill's starting point)
        for _ in range(int(os.environ.get("KILL_POINTS", "2"))):
            if checkpoint_step(run) > TF:
                break
            process = start()
            until = time.monotonic() + rng.uniform(1.5, 12.0)
            while time.monotonic() < until and checkpoint_step(run) <= TF:
                time.sleep(0.05)
            process.kill()
            process.wait()
            steps_seen.append(check_checkpoint(run))
        # 5. in the latent phase, after a checkpoint of the latent replay and an episode past it
        process = start()
        wait_for(lambda: checkpoint_step(run) > TF and logged_after(run, checkpoint_step(run)),
                 process, "an episode after a checkpoint after Tf")
        killed(process)
        assert TF < steps_seen[-1] < STEPS
        assert steps_seen == sorted(steps_seen)  # progress is never lost
    finally:  # a failed check leaves no run behind (the held one would wait 600 s)
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
    subprocess.run(command(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env, timeout=300)
    assert check_checkpoint(run) == STEPS
    metrics = rows(run)
    train = [r["agent_steps"] for r in metrics if r["kind"] == "train"]
    assert train == sorted(set(train)) and train[-1] == STEPS  # each row once, to the end
    (freeze,) = [r for r in metrics if r["kind"] == "freeze"]
    assert freeze["agent_steps"] == TF and freeze["latent_replay"]
    # 20-step windows: the newest 19 transitions of the game in progress wait for theirs
    assert freeze["transitions_after"] == freeze["transitions_before"] == TF - 19
    assert freeze["capacity_after"] == TF + (STEPS - TF) + 1  # what the rest of the run fills
    assert read_package(run / "encoder").config.source["agent_steps"] == TF
    assert np.all(np.diff([r["flops"] for r in metrics]) >= 0)


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM", "SIGHUP"])  # Ctrl-C, kill, logout
def test_stop_signal_writes_a_checkpoint_then_stops_and_resume_finishes(tmp_path, stop):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(cli(*TRAIN, "--out", str(run)), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _train_rows(run):
        time.sleep(0.2)  # wait until it is training
    process.send_signal(getattr(signal, stop))
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    assert f"interrupted ({stop}): writing a checkpoint" in output and "Traceback" not in output
    stopped = _train_rows(run)[-1]
    assert stopped["interrupted"] and check_checkpoint(run) == stopped["agent_steps"] < STEPS
    subprocess.run(cli("resume", str(run), "--no-progress"), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=300)
    assert check_checkpoint(run) == STEPS and _train_rows(run)[-1]["agent_steps"] == STEPS


def _train_rows(run) -> list[dict]:
    return [row for row in rows(run) if row["kind"] == "train"]
