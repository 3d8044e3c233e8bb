"""Data-efficient Rainbow with LeVER on real Atari games: table 3, freezing, learning, short
runs."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lever_transfer.accounting import latent_batch, pixel_batch
from lever_transfer.agents.rainbow import RainbowAgent
from lever_transfer.checkpoint import load_checkpoint, save_checkpoint
from lever_transfer.cli import main
from lever_transfer.config import load_config
from lever_transfer.errors import ConfigError
from lever_transfer.metrics import read_metrics
from lever_transfer.replay import PrioritizedSampler
from lever_transfer.train import Trainer

from .conftest import as_sets, tiny_schedule

OBS = (4, 84, 84)
TABLE_3 = {"encoder:conv1": 8.2e5, "encoder:conv2": 4.6e5, "value stream:fc1": 1.5e5,
           "value stream:fc2": 1.3e4, "advantage stream:fc1": 1.5e5,
           "advantage stream:fc2": 1.2e5}
TINY = tiny_schedule("atari:qbert", eval_every="300 agent_steps",
                     checkpoint_every="300 agent_steps", critic_target_update_freq=50)


def config(**extra):
    return load_config("atari:qbert", {"device": "cpu", **extra})


def rows(run, kind):
    return [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == kind]


def test_table_3_for_a_nine_action_game():
    """Table 3's advantage fc2 (1.2e5 = 257 x 51 x 9) is a game with 9 actions (CrazyClimber)."""
    agent = RainbowAgent(config(task="atari:crazy_climber"), OBS, 9)
    table = {r.name: r.flops for r in agent.layer_flops()}
    assert list(table) == list(TABLE_3)
    for name, paper in TABLE_3.items():
        assert float(f"{table[name]:.1e}") == paper, name
    assert table["value stream:fc1"] == 577 * 256 and table["advantage stream:fc2"] == 257 * 459


def test_flops_cli_prints_table_3_and_the_saving(tmp_path):
    result = CliRunner().invoke(main, ["flops", "atari:qbert"])
    assert result.exit_code == 0, result.output
    assert "encoder:conv1" in result.output and "8.19e+05" in result.output
    assert "advantage stream:fc2" in result.output and "7.86e+04" in result.output  # 6 actions
    assert "after Tf  (latents, heads only)" in result.output


def encoder_calls(agent: RainbowAgent) -> list[str]:
    calls: list[str] = []
    for module in [*agent.encoder.modules(), *agent.target_encoder.modules()]:
        module.register_forward_hook(lambda m, *_: calls.append(type(m).__name__))
    return calls


def test_after_tf_updates_touch_only_the_heads():
    cfg = config()
    agent = RainbowAgent(cfg, OBS, 6)
    rng = np.random.default_rng(0)
    agent.update(pixel_batch(cfg, OBS, gym.spaces.Discrete(6), rng), 1)
    assert agent.freeze("all") == 2 and agent.fully_frozen
    frozen = {k: v.clone() for k, v in agent.encoder.state_dict().items()}
    target = {k: v.clone() for k, v in agent.target_encoder.state_dict().items()}
    assert all(torch.equal(frozen[k], target[k]) for k in frozen)  # tied at Tf
    networks, feature = agent.latent_spec(2)
    assert (networks, feature) == (1, (64, 3, 3)) and math.prod(feature) == 576
    calls = encoder_calls(agent)
    head_before = [p.clone() for p in agent.head.parameters()]
    for step in range(1, 30):
        agent.update(latent_batch(cfg, (1, *feature), gym.spaces.Discrete(6), rng), step)
    assert calls == []  # no encoder layer ran
    assert all(p.grad is None for p in agent.encoder.parameters())
    assert all(torch.equal(v, agent.encoder.state_dict()[k]) for k, v in frozen.items())
    assert any(not torch.equal(a, b) for a, b in zip(head_before, agent.head.parameters()))
    assert {id(p) for g in agent.optimizer.param_groups for p in g["params"]} == \
        {id(p) for p in agent.head.parameters()}


def test_updates_fit_a_fixed_target():
    """A constant reward of 1 with no bootstrap: the chosen action's value moves towards 1."""
    cfg = config(critic_lr=1e-3, encoder_lr=1e-3)
    agent = RainbowAgent(cfg, OBS, 4)
    batch = pixel_batch(cfg, OBS, gym.spaces.Discrete(4), np.random.default_rng(1))
    batch = type(batch)(batch.obs, batch.action, np.ones_like(batch.reward),
                        np.zeros_like(batch.discount), batch.next_obs)
    losses = [agent.update(batch, step).metrics["loss"] for step in range(1, 61)]
    assert losses[-1] < 0.5 * losses[0]
    assert agent.update(batch, 61).metrics["q"] == pytest.approx(1.0, abs=0.3)


def test_act_is_a_valid_action_and_evaluation_is_greedy():
    agent = RainbowAgent(config(eval_epsilon=0.0), OBS, 6)
    obs = np.random.default_rng(0).integers(0, 256, OBS, dtype=np.uint8)
    assert {agent.act(obs, sample=False) for _ in range(5)} == {agent.act(obs, sample=False)}
    assert all(0 <= agent.act(obs, sample=True) < 6 for _ in range(10))
    assert agent.head.training  # acting leaves the heads in training mode


@pytest.mark.slow
def test_short_real_run_freezes_converts_and_resumes(tmp_path):
    cfg = load_config("atari:qbert", TINY)
    Trainer(cfg, tmp_path / "run", progress=False, say=lambda s: None).run()
    run = tmp_path / "run"
    (freeze,) = rows(run, "freeze")
    assert freeze["agent_steps"] == 300 and freeze["latent_replay"]
    # the newest 19 of the 300 transitions wait for their 20-step window (the episode goes on)
    assert freeze["transitions_after"] == freeze["transitions_before"] == 300 - 19
    # 576 float32 and a 13-byte record per entry, against 84 x 84 + 21 B of pixels
    assert freeze["replay_bytes"] == freeze["capacity_after"] * (576 * 4 + 13)
    # the pixels' memory would hold 601 * 7077 // 2317 = 1835 latent entries; the run can only
    # fill the 300 held plus 300 more steps and one entry for the end
    assert freeze["capacity_after"] == 300 + 300 + 1 < 601 * 7077 // 2317
    assert freeze["capacity_before"] * (84 * 84 + 21) == 601 * 7077
    train = rows(run, "train")
    assert train[-1]["agent_steps"] == 600 and train[-1]["phase"] == "latents"
    assert train[-1]["update_ms"] > 0 and len(rows(run, "eval")) == 2
    flops = [r["flops"] for r in read_metrics(run / "metrics.jsonl")]
    assert flops == sorted(flops)
    resumed = Trainer(load_config("atari:qbert", {**TINY, "steps": "700 agent_steps"}), run,
                      progress=False, say=lambda s: None)
    assert resumed.restore() and resumed.counters.agent_steps == 600
    assert resumed.agent.fully_frozen and resumed.phase == "latents"
    resumed.run()
    assert rows(run, "train")[-1]["agent_steps"] == 700


def test_bad_atari_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="Atari games use 'rainbow'"):
        load_config("atari:qbert", {"algorithm": "sac_curl"})
    with pytest.raises(ConfigError, match="frame_stack=4"):
        load_config("atari:qbert", {"frame_stack": 3})
    with pytest.raises(ConfigError, match="prioritized_replay.* is a setting of rainbow"):
        load_config("walker_walk", {"prioritized_replay": True})
    result = CliRunner().invoke(main, ["finetune", "--from", "hub:walker_stand-20k", "--to",
                                       "atari:qbert"])
    assert result.exit_code != 0 and "cannot read atari:qbert's observations" in result.output
    result = CliRunner().invoke(main, ["train", "atari:qbret"])
    assert result.exit_code != 0 and "did you mean atari:qbert" in result.output
    assert "Traceback" not in result.output


def test_recipes_cover_the_papers_games_with_table_5_values():
    tf = {"alien": (50_000, 100_000), "amidar": (50_000, 50_000), "bank_heist": (50_000, 50_000),
          "crazy_climber": (100_000, 100_000), "krull": (50_000, 50_000),
          "private_eye": (100_000, 150_000), "qbert": (100_000, 100_000),
          "seaquest": (50_000, 150_000)}
    for game, (figure_3, figure_4) in tf.items():
        compute, memory = load_config(game), load_config(f"{game}_memory")
        assert compute.task == memory.task == f"atari:{game}"
        assert compute.agent_steps(compute.freeze_at) == figure_3
        assert memory.agent_steps(memory.freeze_at) == figure_4
        assert compute.replay_capacity is None and memory.replay_capacity == 10_000
    cfg = load_config("qbert")
    assert (cfg.batch_size, cfg.agent.multi_step, cfg.agent.target_update_period, cfg.hidden_dim,
            cfg.agent_steps(cfg.init_steps), cfg.frame_stack, cfg.discount) == \
        (32, 20, 2000, 256, 1600, 4, 0.99)  # table 5


@pytest.mark.slow
def test_prioritized_run_keeps_its_priorities_through_the_freeze(tmp_path):
    cfg = load_config("atari:qbert", {**TINY, "prioritized_replay": True,
                                      "steps": "400 agent_steps"})
    trainer = Trainer(cfg, tmp_path, progress=False, say=lambda s: None)
    freeze, seen = trainer.freeze, {}

    def freeze_and_compare():
        pixel = trainer.replay
        seen["before"] = pixel.sampler.priorities(pixel.entries_to_convert() % pixel.capacity)
        seen["waiting"] = pixel.waiting
        row = freeze()
        latent = trainer.replay
        seen["after"] = latent.sampler.priorities(np.arange(latent.total) % latent.capacity)
        return row

    trainer.freeze = freeze_and_compare
    trainer.run()
    assert len(np.unique(seen["before"])) > 10  # set from the updates' losses, not uniform
    np.testing.assert_array_equal(seen["before"], seen["after"])
    # the transitions still waiting for their 20-step window at Tf have no priority yet
    assert seen["waiting"] > 0 and (seen["after"][-1 - seen["waiting"]:] == 0).all()
    sampler = trainer.replay.sampler
    assert isinstance(sampler, PrioritizedSampler) and rows(tmp_path, "train")[-1]["phase"] == \
        "latents"
    assert sampler.init_args() == {"exponent": 0.5, "beta_start": 0.4, "anneal_from": 100,
                                   "anneal_to": 400, "epsilon": 1e-6}  # the config's schedule


@pytest.mark.slow  # two Trainers: two Atari environments
def test_a_checkpoint_written_before_samplers_resumes(tmp_path):
    """A run folder whose checkpoint names the replay as the code before samplers did (init
    args with prioritized=True, no n_step or gamma; the tree's leaves and max priority at the
    top of the replay state) resumes: the sampler, n_step and gamma come from the config, the
    priorities are kept, and the transitions still waiting for their 20-step window (which the
    old code had given the max priority) wait again."""
    cfg = load_config("atari:qbert", {**TINY, "prioritized_replay": True})
    trainer = Trainer(cfg, tmp_path, progress=False, say=lambda s: None)
    frames = np.random.default_rng(0).integers(0, 256, (8, 4, 84, 84), dtype=np.uint8)
    replay = trainer.replay
    replay.add_reset(frames[0])
    for i in range(1, 70):  # a life lost at step 30, then an episode under way
        replay.add_step(np.array([i % 6], np.float32), float(i % 3 == 0), i == 30, frames[i % 8])
        if i == 30:
            replay.add_reset(frames[1])
    ids = np.arange(replay.total)
    replay.update_priorities(ids, ids.astype(np.float64))  # waiting ones are skipped
    assert replay.waiting == 19
    init = {k: v for k, v in replay.init_args().items() if k not in ("n_step", "gamma", "sampler")}
    old_state = {k.removeprefix("sampler."): np.array(v) for k, v in replay.state_dict().items()}
    waiting = np.arange(replay.total - 20, replay.total - 1)
    old_state["priorities"][waiting % replay.capacity] = old_state["max_priority"]
    save_checkpoint(tmp_path / "checkpoints", 69, {
        "counters": dataclasses.asdict(trainer.counters) | {"agent_steps": 69},
        "agent": trainer.agent.export_state(),
        "replay": {"kind": "PixelReplay", "init": init | {"prioritized": True},
                   "state": old_state},
        "rng": {"numpy": trainer.rng.bit_generator.state, "torch": torch.get_rng_state()}})
    trainer.close()
    resumed = Trainer(cfg, tmp_path, progress=False, say=lambda s: None)
    try:
        assert resumed.restore() and resumed.counters.agent_steps == 69
        copy = resumed.replay
        assert isinstance(copy.sampler, PrioritizedSampler) and copy.sampler.anneal_to == 600
        assert (copy.n_step, copy.gamma, copy.total, len(copy), copy.waiting) == \
            (20, 0.99, replay.total, len(replay), 19)
        np.testing.assert_array_equal(copy.sampler.tree.tree, replay.sampler.tree.tree)
        assert copy.sampler.max_priority == replay.sampler.max_priority
        batch = copy.sample(32, np.random.default_rng(0), step=200)
        assert copy.sampleable(batch.ids).all() and batch.weights.max() == 1.0
        now = copy.init_args()  # what the next checkpoint stores: today's layout
        assert now["sampler"]["kind"] == "PrioritizedSampler" and now["n_step"] == 20
        assert "prioritized" not in now
    finally:
        resumed.close()


SMALL = [*as_sets(TINY, leave_out=("steps", "freeze_at", "eval_every", "checkpoint_every")),
         "--no-progress"]


@pytest.mark.slow
def test_atari_encoders_go_through_the_zoo_and_across_games(tmp_path, isolated_hub):
    """pretrain atari:qbert publishes qbert-300; finetune loads it into Pong (same 6 actions:
    heads too) and refuses full transfer to Breakout (4 actions)."""
    from lever_transfer import load_encoder
    from lever_transfer.zoo.package import read_package

    runner = CliRunner()
    result = runner.invoke(main, ["pretrain", "atari:qbert", "--steps", "300", "--snapshot-every",
                                  "300", "--out", str(tmp_path / "source"), *SMALL])
    assert result.exit_code == 0, result.output
    package = read_package(isolated_hub / "qbert-300")
    assert package.config.heads == {"action_dim": 6, "atoms": 51, "hidden_dim": 256,
                                       "kind": "dueling_c51"}
    assert package.observation.channels == 1 and package.config.architecture == "der"
    assert "Rainbow on `atari:qbert`" in (isolated_hub / "qbert-300" / "README.md").read_text()
    result = runner.invoke(main, ["finetune", "--from", "hub:qbert-300", "--to", "atari:pong",
                                  "--transfer", "full", "--steps", "200", "--out",
                                  str(tmp_path / "pong"), *SMALL])
    assert result.exit_code == 0, result.output
    (freeze,) = rows(tmp_path / "pong", "freeze")
    assert freeze["agent_steps"] == 0 and freeze["frozen_layers"] == 2
    _, state = load_checkpoint(tmp_path / "pong" / "checkpoints" / "ckpt-0000000200")
    weights = state["agent"]["modules"]
    for name, tensor in package.part("encoder").items():  # frozen: still the package's weights
        assert torch.equal(weights[f"encoder.{name}"], tensor)
    result = runner.invoke(main, ["finetune", "--from", "hub:qbert-300", "--to",
                                  "atari:breakout", "--transfer", "full"])
    assert result.exit_code != 0 and "6 actions, atari:breakout has 4" in result.output
    encoder = load_encoder("hub:qbert-300", freeze_layers=2)
    assert encoder(torch.zeros(3, 4, 84, 84, dtype=torch.uint8)).shape == (3, 64, 3, 3)


@pytest.mark.slow
def test_finetune_from_the_shipped_qbert_encoder(tmp_path, isolated_hub):
    """The shipped zoo's qbert-100k (Rainbow, 100K agent steps on this CPU) into Pong (6 actions
    too, so the heads transfer as well) with latent replay from step 0."""
    result = CliRunner().invoke(main, ["finetune", "--from", "hub:qbert-100k", "--to",
                                       "atari:pong", "--transfer", "full", "--steps", "150",
                                       "--out", str(tmp_path / "run"), *SMALL])
    assert result.exit_code == 0, result.output
    assert "shipped zoo" in result.output
    (freeze,) = rows(tmp_path / "run", "freeze")
    assert freeze["agent_steps"] == 0 and freeze["latent_replay"]
    assert rows(tmp_path / "run", "train")[-1]["phase"] == "latents"


@pytest.mark.slow
def test_a_memory_budget_holds_with_the_priority_tree(tmp_path):
    """Section 4.2's Cb = floor(C * P / L) with the real bytes of an entry (payload, its record
    and the tree's 32 B per slot); a budget small enough that the latents fill it by the end."""
    cfg = load_config("atari:qbert", {**TINY, "prioritized_replay": True,
                                      "replay_memory": "400KB", "steps": "450 agent_steps"})
    Trainer(cfg, tmp_path, progress=False, say=lambda s: None).run()
    (freeze,) = rows(tmp_path, "freeze")
    pixel, latent = 84 * 84 + 21 + 32, 576 * 4 + 13 + 32  # bytes per entry, tree included
    assert freeze["capacity_before"] == 400_000 // pixel == 56
    grown = 56 * pixel // latent  # 169
    # the trainer's cap, what the run can still fill (the transitions held, one entry per step
    # left and one more), does not bind here
    assert grown < freeze["transitions_before"] + 150 + 1
    assert freeze["capacity_after"] == grown == 169 and grown * latent <= 400_000
    assert freeze["transitions_after"] == freeze["transitions_before"]
    metrics = list(read_metrics(tmp_path / "metrics.jsonl"))
    assert max(r["replay_bytes"] for r in metrics) <= 400_000
    # the latents filled the budget, then wrapped; the newest 19 wait for their 20-step window
    assert metrics[-1]["replay_size"] >= 169 - 5 - 19
