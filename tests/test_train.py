"""Real short training runs: LeVER freezes, converts, keeps learning, checkpoints and resumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from lever_transfer.config import load_config
from lever_transfer.metrics import read_metrics
from lever_transfer.train import Trainer
from lever_transfer.zoo.package import read_package

from .conftest import as_sets, tiny_config, tiny_schedule

pytestmark = pytest.mark.slow  # real runs

# tiny_config(): walker_walk at action repeat 8, 125 agent steps per episode, so a run of 250
# agent steps is two episodes; Tf = 100 falls inside the first one.


def rows(run: Path, kind: str) -> list[dict]:
    return [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == kind]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    Trainer(tiny_config(), run, progress=False, say=lambda s: None).run()
    return run


def test_run_freezes_converts_and_keeps_learning(finished_run):
    (freeze,) = rows(finished_run, "freeze")
    assert freeze["agent_steps"] == 100 and freeze["latent_replay"]
    assert freeze["transitions_after"] == freeze["transitions_before"] == 100
    train = rows(finished_run, "train")
    assert [r["agent_steps"] for r in train] == [125, 250]
    assert train[-1]["phase"] == "latents" and train[-1]["update_ms"] > 0
    assert train[-1]["replay_size"] == 250  # every transition since the start
    flops = [r["flops"] for r in read_metrics(finished_run / "metrics.jsonl")]
    assert flops == sorted(flops) and flops[-1] > flops[0]
    assert len(rows(finished_run, "eval")) == 2


def test_run_directory_holds_config_checkpoint_and_frozen_encoder(finished_run):
    assert (finished_run / "config.yaml").exists()
    assert (finished_run / "checkpoints" / "LATEST").read_text() == "ckpt-0000000250"
    config = read_package(finished_run / "encoder").config  # a verified zoo package
    assert config.frozen_layers == 5 and config.source["agent_steps"] == 100
    assert config.observation.frame_stack == 3 and len(config.sha256) == 64
    assert config.parts == ("actor_fc", "encoder", "heads")


def test_latent_phase_grows_capacity_under_a_memory_budget(tmp_path):
    cfg = tiny_config(replay_memory="3MB", steps="250 agent_steps")
    Trainer(cfg, tmp_path, progress=False, say=lambda s: None).run()
    (freeze,) = rows(tmp_path, "freeze")
    pixel, latent = 3 * 100 * 100 + 41, 4 * 2 * 50 * 4 + 33  # bytes per entry: payload + record
    assert freeze["capacity_before"] == 3_000_000 // pixel == 99
    # section 4.2's Cb = floor(C * P / L) = 1821 latent entries fit the pixels' memory, but the
    # 150 steps after Tf add at most 150 + ceil(150 / 125) + 1 entries (steps, episode starts,
    # the last observation), and a short run allocates no more than it can fill
    assert freeze["transitions_before"] == 96  # sampleable in the 99 entries after 101
    assert freeze["capacity_after"] == 96 + 150 + 2 + 1 < 99 * pixel // latent
    assert rows(tmp_path, "train")[-1]["replay_bytes"] <= 3_000_000


def test_freezing_conv_layers_keeps_pixels(tmp_path):
    cfg = tiny_config(freeze_layers=4, steps="125 agent_steps")
    trainer = Trainer(cfg, tmp_path, progress=False, say=lambda s: None)
    assert "keeping pixels" in trainer.header()
    trainer.run()
    (freeze,) = rows(tmp_path, "freeze")
    assert not freeze["latent_replay"] and rows(tmp_path, "train")[-1]["phase"] == "frozen-pixels"


class Crash(Exception):
    pass


def crash_at(cfg, run_dir: Path, step: int) -> None:
    """Run ``cfg`` in ``run_dir`` until the update at agent step ``step`` raises."""
    trainer = Trainer(cfg, run_dir, progress=False, say=lambda s: None)
    update = trainer._update

    def crashing_update() -> float:
        if trainer.counters.agent_steps == step:
            raise Crash
        return update()

    trainer._update = crashing_update
    with pytest.raises(Crash):
        trainer.run()


def test_resume_continues_the_same_run(tmp_path, finished_run):
    crash_at(tiny_config(), tmp_path, 190)
    resumed = Trainer(tiny_config(), tmp_path, progress=False, say=lambda s: None)
    assert resumed.restore()
    assert resumed.counters.agent_steps == 125 and len(resumed.replay) == 125
    carried = resumed.counters.cpu_s
    assert carried > 0  # the checkpoint holds the CPU seconds spent before it
    resumed.run()
    train = rows(tmp_path, "train")
    assert [r["agent_steps"] for r in train] == [125, 250]  # no row logged twice
    assert train[-1]["cpu_s"] > carried  # CPU time counts on across the resume
    # determinism: every figure but the clocks equals the uninterrupted run's, losses included
    assert without_clocks(read_metrics(tmp_path / "metrics.jsonl")) == without_clocks(
        read_metrics(finished_run / "metrics.jsonl"))
    assert {"critic_loss", "actor_loss", "alpha", "q"} <= set(train[-1])


def test_a_run_stopped_mid_episode_evaluates_and_snapshots_on_schedule_after_resume(tmp_path):
    """A stop signal checkpoints mid-episode (here at agent step 61) and the resume starts a fresh
    episode there, so episodes now end at 186 and 250 instead of 125 and 250; the evaluations
    and the snapshot stay at 125 (mid-episode) and 250, and the snapshot is announced after the
    checkpoint at the episode's end that holds it."""
    from lever_transfer.train import Evaluated, SnapshotSaved

    cfg = tiny_config(lever=False, snapshot_every="125 agent_steps")
    stopped = Trainer(cfg, tmp_path, progress=False, say=lambda s: None)
    act = stopped._act

    def act_then_stop(obs):
        if stopped.counters.agent_steps == 60:
            stopped._stop = True  # what the stop-signal handler does
        return act(obs)

    stopped._act = act_then_stop
    stopped.run()
    resumed = Trainer(cfg, tmp_path, progress=False, say=lambda s: None)
    assert resumed.restore() and resumed.counters.agent_steps == 61
    checkpoint, written = resumed.checkpoint, []

    def recording_checkpoint():
        written.append(("checkpoint", resumed.counters.agent_steps))
        return checkpoint()

    resumed.checkpoint = recording_checkpoint
    for event in resumed.events():
        if isinstance(event, (Evaluated, SnapshotSaved)):
            written.append((type(event).__name__, event.env_steps // 8))
    assert [r["agent_steps"] for r in rows(tmp_path, "train")] == [61, 186, 250]
    assert [r["agent_steps"] for r in rows(tmp_path, "eval")] == [125, 250]
    assert written[:3] == [("Evaluated", 125), ("checkpoint", 186), ("SnapshotSaved", 125)]
    assert ("SnapshotSaved", 250) in written


CLOCKS = {"wall_s", "cpu_s", "update_ms", "conversion_s"}


def without_clocks(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in CLOCKS} for row in metrics]


def test_same_seed_same_metrics_in_another_process(tmp_path, finished_run):
    """The figures a run logs depend on its seed and recipe only, not on the process."""
    import subprocess
    import sys

    overrides = as_sets(tiny_schedule())
    subprocess.run([sys.executable, "-m", "lever_transfer.cli", "train", "walker_walk",
                    *overrides, "--precision", "fp32",  # what auto is in-process in tests
                    "--out", str(tmp_path), "--no-progress"], check=True,
                   capture_output=True)
    assert without_clocks(read_metrics(tmp_path / "metrics.jsonl")) == without_clocks(
        read_metrics(finished_run / "metrics.jsonl"))


def test_atari_resume_logs_what_the_uninterrupted_run_logs(tmp_path):
    """Qbert loses lives mid-game; checkpoints wait for the game's end, so a resume replays
    exactly (untrained Qbert: game overs near agent steps 392 and 718, Tf = 400)."""
    atari = tiny_schedule("atari:qbert", steps="800 agent_steps", freeze_at="400 agent_steps",
                          checkpoint_every="50 agent_steps")
    whole = tmp_path / "whole"
    Trainer(load_config("atari:qbert", atari), whole, progress=False, say=lambda s: None).run()
    crashed = tmp_path / "crashed"
    crash_at(load_config("atari:qbert", atari), crashed, 600)
    resumed = Trainer(load_config("atari:qbert", atari), crashed, progress=False,
                      say=lambda s: None)
    assert resumed.restore() and 0 < resumed.counters.agent_steps < 400  # a game's end
    resumed.run()
    assert without_clocks(read_metrics(crashed / "metrics.jsonl")) == without_clocks(
        read_metrics(whole / "metrics.jsonl"))


@pytest.mark.parametrize("minutes, expected", [(1e-9, [125, 250, 375]), (None, [375])])
def test_checkpoint_minutes_adds_a_checkpoint_at_the_first_episode_end_after_them(
        tmp_path, minutes, expected):
    """A slow run (CPU pretraining: a second per update) must not lose hours to a step-based
    schedule: with checkpoint_minutes every episode end past the deadline checkpoints."""
    cfg = tiny_config(lever=False, steps="375 agent_steps", init_steps="375 agent_steps",
                      checkpoint_every="1M agent_steps", checkpoint_minutes=minutes)
    trainer = Trainer(cfg, tmp_path, progress=False, say=lambda s: None)
    written, checkpoint = [], trainer.checkpoint

    def recording_checkpoint():
        written.append(trainer.counters.agent_steps)
        return checkpoint()

    trainer.checkpoint = recording_checkpoint
    trainer.run()
    assert sorted(set(written)) == expected


def test_drq_run_freezes_converts_and_resumes_exactly(tmp_path):
    """DrQ through the same loop: at Tf its replay becomes the latents of K shifted views, the
    heads keep learning on them, and a run resumed after a crash logs what an uninterrupted one
    logs (its shifts come from the agent's own generator, which the checkpoint holds)."""
    cfg = tiny_config(algorithm="drq")
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    Trainer(cfg, whole, progress=False, say=lambda s: None).run()
    (freeze,) = rows(whole, "freeze")
    assert freeze["agent_steps"] == 100 and freeze["latent_replay"]
    assert freeze["transitions_after"] == freeze["transitions_before"] == 100
    first, last = rows(whole, "train")
    assert last["phase"] == "latents" and last["update_ms"] > 0
    # the first episode's pixel updates (steps 50-100) had no contrastive pass
    assert "critic_loss" in first and "curl_loss" not in first
    assert read_package(whole / "encoder").config.heads["kind"] == "sac_tanh"
    crash_at(cfg, crashed, 190)
    resumed = Trainer(cfg, crashed, progress=False, say=lambda s: None)
    assert resumed.restore() and resumed.counters.agent_steps == 125
    resumed.run()
    assert without_clocks(read_metrics(crashed / "metrics.jsonl")) == without_clocks(
        read_metrics(whole / "metrics.jsonl"))
