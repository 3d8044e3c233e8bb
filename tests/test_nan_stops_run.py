"""A diverging run stops at the first NaN with a clear message and no checkpoint after it;
resume continues from the checkpoint before it, with a changed learning rate if asked."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from lever_transfer.cli import main
from lever_transfer.config import load_config
from lever_transfer.errors import LeverError
from lever_transfer.run_dir import RunDir
from lever_transfer.train import Trainer

from .conftest import tiny_schedule

pytestmark = pytest.mark.slow  # real runs

# Atari checkpoints wait for a game's end: untrained Qbert's first one is near agent step 390
TINY = tiny_schedule("atari:qbert", freeze_at="350 agent_steps",
                     checkpoint_every="150 agent_steps")


def test_a_nan_loss_stops_the_run_before_any_checkpoint_holds_it(tmp_path):
    trainer = Trainer(load_config("atari:qbert", TINY), tmp_path, progress=False,
                      say=lambda s: None)
    update = trainer.agent.update

    def diverging(batch, step):
        result = update(batch, step)
        if step >= 500:
            result.metrics["loss"] = math.nan
        return result

    trainer.agent.update = diverging
    with pytest.raises(LeverError, match="agent step 500: the update's loss is not finite") as info:
        trainer.run()
    assert "\n" not in str(info.value) and "lever-transfer resume" in str(info.value)
    run = RunDir(tmp_path)
    assert run.latest_step() is not None and run.latest_step() < 500
    assert "--set lr=..." in str(info.value)  # Rainbow's learning rate, by its own name
    result = CliRunner().invoke(main, ["resume", str(tmp_path), "--set", "lr=5e-5",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert run.latest_step() == 600
    assert run.read_config().agent.lr == 5e-5
    refused = CliRunner().invoke(main, ["resume", str(tmp_path), "--set", "frame_stack=2"])
    assert refused.exit_code != 0 and "resume cannot change frame_stack" in refused.output


def test_a_nan_reward_stops_the_run(tmp_path):
    trainer = Trainer(load_config("atari:qbert", TINY), tmp_path, progress=False,
                      say=lambda s: None)
    step_wait = trainer.env.step_wait

    def broken():
        obs, reward, terminated, truncated, info = step_wait()
        return obs, math.nan if trainer.counters.agent_steps == 120 else reward, terminated, \
            truncated, info

    trainer.env.step_wait = broken
    with pytest.raises(LeverError, match="the environment's reward is not finite"):
        trainer.run()
