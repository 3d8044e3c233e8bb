"""A real run's FLOPs column, the paper's x-axis, added up term by term (appendix B).

A tiny DMC run and a tiny Atari run, each with a freeze: the FLOPs they log at the freeze row
and at the end must equal the number of updates of each kind, counted here from the schedule,
times that kind's FLOPs, plus the one-time conversion (every stored observation encoded, K crops
x N latents) and the per-step encoding of every observation stored after Tf (the EKN term).
Per-kind FLOPs of pixel updates are counted on a fresh agent of the same recipe; latent updates
and encodings are written out from the per-layer table (tables 2 and 3). The same runs also
record the discounts their updates received, which must be the recipe's (gamma^n, or 0).
"""

from __future__ import annotations

import numpy as np
import pytest

from lever_transfer.accounting import latent_batch, pixel_batch
from lever_transfer.agents import agent_for_task
from lever_transfer.config import load_config
from lever_transfer.flops import FlopCounter
from lever_transfer.metrics import read_metrics
from lever_transfer.train import Trainer

from .conftest import tiny_schedule

pytestmark = pytest.mark.slow  # real runs, and real Qbert play

DMC = tiny_schedule(eval_every="1M agent_steps", checkpoint_every="1M agent_steps")
ATARI = tiny_schedule("atari:qbert", critic_target_update_freq=50, hidden_dim=64)


def run_recording_discounts(cfg, run_dir):
    """Train ``cfg`` to the end; returns (metrics rows, every discount an update received).
    The real update runs: the recorder only reads its batch on the way in."""
    trainer = Trainer(cfg, run_dir, progress=False, say=lambda s: None)
    discounts: list[np.ndarray] = []
    update = trainer.agent.update

    def recording_update(batch, step):
        discounts.append(np.array(batch.discount))
        return update(batch, step)

    trainer.agent.update = recording_update
    trainer.run()
    return list(read_metrics(run_dir / "metrics.jsonl")), np.concatenate(discounts)


def episode_starts(rows: list[dict]) -> list[int]:
    """Agent steps at which episodes began (a reset stores an observation there)."""
    ends = [r["agent_steps"] for r in rows if r["kind"] == "train"]
    return [0, *ends[:-1]]


def update_counts(cfg, period: int) -> dict[tuple[bool, bool], int]:
    """Updates of each kind (after Tf, actor step) that the schedule makes: one per agent step
    from init_steps on (the replay holds a batch by then), the actor every ``period`` steps."""
    ar = cfg.action_repeat
    start, tf, total = (cfg.init_steps.to_agent_steps(ar), cfg.freeze_at.to_agent_steps(ar),
                        cfg.steps.to_agent_steps(ar))
    assert start >= cfg.batch_size  # else the first updates would wait for a full batch
    counts: dict[tuple[bool, bool], int] = {}
    for step in range(start, total):
        kind = (step >= tf, step % period == 0)
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def pixel_update_flops(cfg, agent, obs_shape, space) -> dict[bool, int]:
    """FLOPs of a pixel update with and without the actor step, on a fresh agent."""
    rng = np.random.default_rng(0)
    flops = {}
    for actor_step in (True, False):
        with FlopCounter() as counter:
            agent.update(pixel_batch(cfg, obs_shape, space, rng), 0 if actor_step else 1)
        flops[actor_step] = counter.total
    return flops


def check_run_total(rows, cfg, per_update, per_observation, period):
    """Freeze row and final row against the counted terms."""
    tf, total = cfg.freeze_at.to_agent_steps(cfg.action_repeat), cfg.steps.to_agent_steps(
        cfg.action_repeat)
    counts = update_counts(cfg, period)
    starts = episode_starts(rows)
    (freeze,) = [r for r in rows if r["kind"] == "freeze"]
    assert freeze["agent_steps"] == tf
    # the observations stored before Tf: one per step, one per reset up to Tf (a reset at Tf
    # happens before the freeze); each is encoded once by the conversion
    converted = tf + sum(s <= tf for s in starts)
    assert freeze["conversion_flops"] == converted * per_observation
    before = sum(n * per_update[kind] for kind, n in counts.items() if not kind[0])
    assert freeze["flops"] == before + converted * per_observation
    after = sum(n * per_update[kind] for kind, n in counts.items() if kind[0])
    stored_after = (total - tf) + sum(s > tf for s in starts)
    assert rows[-1]["flops"] == freeze["flops"] + after + stored_after * per_observation


def test_dmc_run_flops_are_the_sum_of_counted_updates_conversion_and_encoding(tmp_path):
    cfg = load_config("walker_walk", DMC)
    rows, discounts = run_recording_discounts(cfg, tmp_path / "run")
    agent, obs_shape, space = agent_for_task(cfg)
    layers = {r.name: r.flops for r in agent.layer_flops()}
    batch, k = cfg.batch_size, cfg.latent_augmentations
    convs = sum(v for name, v in layers.items() if name.startswith("encoder:"))
    # one crop: shared convs once, then the critic's and the actor's own fc (N = 2)
    per_observation = k * (convs + layers["critic:fc1"] + layers["actor:fc1"])
    q_net = sum(layers[f"critic:fc{i}"] for i in (2, 3, 4))  # one of the twin Q networks
    actor = sum(layers[f"actor:fc{i}"] for i in (2, 3, 4))
    # after Tf, per sample: next action (actor, no grad), target twin Q (no grad), online twin
    # Q with backward (3x); the actor step adds the actor and the twin Q with backward
    latent_critic = batch * (actor + 2 * q_net + 3 * 2 * q_net)
    latent_actor = batch * (3 * actor + 3 * 2 * q_net)
    pixels = pixel_update_flops(cfg, agent, obs_shape, space)
    per_update = {(False, True): pixels[True], (False, False): pixels[False],
                  (True, True): latent_critic + latent_actor, (True, False): latent_critic}
    agent.freeze("all")  # the latent formulas are what the counter sees on a frozen agent
    with FlopCounter() as counter:
        agent.update(latent_batch(cfg, (2, 50), space, np.random.default_rng(0)), 0)
    assert counter.total == per_update[(True, True)]
    check_run_total(rows, cfg, per_update, per_observation, cfg.agent.actor_update_freq)
    # DMC episodes end by the time limit, never terminate: every one-step target bootstraps
    assert set(discounts.tolist()) == {np.float32(cfg.discount).item()}
    updates = sum(update_counts(cfg, cfg.agent.actor_update_freq).values())
    assert len(discounts) == updates * cfg.batch_size


def test_atari_run_flops_are_the_sum_of_counted_updates_conversion_and_encoding(tmp_path):
    cfg = load_config("atari:qbert", ATARI)
    rows, discounts = run_recording_discounts(cfg, tmp_path / "run")
    agent, obs_shape, space = agent_for_task(cfg)
    layers = {r.name: r.flops for r in agent.layer_flops()}
    per_observation = layers["encoder:conv1"] + layers["encoder:conv2"]  # N = K = 1
    head = sum(v for name, v in layers.items() if "stream" in name)
    # after Tf, per sample: online head on the next latent (double Q's choice), target head,
    # online head with backward (3x); no actor step, target copies cost nothing
    latent = cfg.batch_size * (head + head + 3 * head)
    pixels = pixel_update_flops(cfg, agent, obs_shape, space)
    assert pixels[True] == pixels[False]
    per_update = {(False, True): pixels[True], (False, False): pixels[True],
                  (True, True): latent, (True, False): latent}
    check_run_total(rows, cfg, per_update, per_observation, 2)
    # 20-step returns: gamma^20 inside a life, 0 when a life is lost within the 20 steps; a
    # window that the newest stored entry cuts is not sampled until it is complete, and no game
    # reaches its time limit here (the only other way to a shorter window, gamma^m)
    gamma, n = cfg.discount, cfg.agent.multi_step
    assert set(discounts.tolist()) <= {0.0, np.float32(gamma**n).item()}
    values, counts = np.unique(discounts, return_counts=True)
    by_value = dict(zip(values.tolist(), counts.tolist()))
    assert by_value[np.float32(gamma**n).item()] > 0.6 * len(discounts)
    assert by_value[0.0] > 0  # Qbert's random play loses lives within 600 steps


def test_atari_n_step_samples_are_complete_windows_0_or_gamma_n():
    """The precise rule behind the run's set of discounts, on real Qbert play (random actions,
    a lost life is a termination): each sampled 20-step return and discount equals a walk over
    the transitions as they were stored: 0 when a life is lost within the window, else gamma^20.
    A transition whose window reaches the newest stored entry while the episode goes on is never
    sampled (as in the reference data-efficient Rainbow code): the walk would come up short of
    rewards still to come. Prioritized sampling, so each sample's entry number is known."""
    from lever_transfer.envs.atari import AtariEnv
    from lever_transfer.replay import PixelReplay, PrioritizedSampler

    gamma, n = 0.99, 20
    env = AtariEnv("atari:qbert", seed=0)
    replay = PixelReplay(1000, (1, 84, 84), 4, 1, n_step=n, gamma=gamma,
                         sampler=PrioritizedSampler())
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    replay.add_reset(obs)
    rewards, terminal = {}, set()  # by the entry the transition starts from

    def walk(entry: int) -> tuple[float, float] | None:
        """(return, discount), or None while the window is incomplete."""
        total = 0.0
        for k in range(n):
            if entry + k not in rewards:  # the newest stored entry, the episode under way
                return None
            total += gamma**k * rewards[entry + k]
            if entry + k in terminal:
                return total, 0.0
        return total, gamma**n

    seen, held_back = {"zero": 0, "full": 0}, 0
    for step in range(1, 601):
        start = replay.total - 1
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        replay.add_step(np.zeros(1), reward, terminated, obs)
        rewards[start] = reward
        if terminated:
            terminal.add(start)
        if terminated or truncated:
            obs, _ = env.reset()
            replay.add_reset(obs)
        if step % 50:
            continue
        assert not truncated  # no game reaches its time limit: no window ends early but by a loss
        waiting = [e for e in range(replay.oldest, replay.total)
                   if e in rewards and walk(e) is None]
        assert replay.waiting == len(waiting)
        held_back += len(waiting)
        batch = replay.sample(64, rng, step=0)
        for entry, ret, discount in zip(batch.ids, batch.reward, batch.discount):
            expected = walk(int(entry))
            assert expected is not None, f"entry {entry}: its 20-step window is incomplete"
            assert ret == pytest.approx(expected[0], rel=1e-5, abs=1e-5)
            assert discount == pytest.approx(expected[1], rel=1e-6)
            seen["zero" if discount == 0 else "full"] += 1
    env.close()
    assert min(seen.values()) > 0 and held_back > 0, (seen, held_back)  # each case happened
