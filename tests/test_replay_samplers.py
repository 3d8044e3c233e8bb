"""Samplers: the uniform and the prioritized one own their state and schedule; the replay only
says which transitions may be sampled.

Prioritized draws are checked against the priorities ``(|loss| + eps) ** exponent`` that the
losses set, importance weights against ``(N * P(i)) ** -beta / max``, beta against the formula
the training loop used before samplers owned it, and the tree against the replay's own rule
(positive exactly where a transition can be sampled) after any sequence of writes. Replay
states written before samplers existed still load.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lever_transfer.errors import ReplayError
from lever_transfer.replay import (
    LatentReplay,
    PixelReplay,
    PrioritizedSampler,
    UniformSampler,
    convert_to_latent,
    make_sampler,
)
from lever_transfer.replay.priority import TREE_BYTES_PER_SLOT
from lever_transfer.replay.samplers import resume_init_args

LATENT = (1, 1, 2)


def latent_replay(n_transitions: int, sampler=None, n_step: int = 1, capacity: int = 64
                  ) -> LatentReplay:
    """One terminated episode of ``n_transitions`` steps (every window complete)."""
    replay = LatentReplay(capacity, LATENT, 1, n_step=n_step, gamma=0.9, sampler=sampler)
    replay.add_reset(np.zeros(LATENT))
    for i in range(n_transitions):
        replay.add_step(np.zeros(1), float(i), i == n_transitions - 1, np.full(LATENT, i + 1.0))
    return replay


def old_beta(step: int, init_steps: int, total: int, priority_weight: float) -> float:
    """What ``Trainer._update`` computed before the sampler owned the schedule."""
    progress = (step - init_steps) / max(1, total - init_steps)
    return priority_weight + (1 - priority_weight) * min(1.0, max(0.0, progress))


# ------------------------------------------------------------------------------ schedule
@given(step=st.integers(0, 10**6), init=st.integers(0, 10**5), length=st.integers(0, 10**6),
       weight=st.floats(0, 1))
def test_beta_schedule_is_the_training_loops_formula(step, init, length, weight):
    sampler = PrioritizedSampler(0.5, weight, anneal_from=init, anneal_to=init + length)
    assert sampler.beta(step) == old_beta(step, init, init + length, weight)
    assert sampler.beta(None) == 1.0


# ------------------------------------------------------------------------------ draws, weights
@settings(max_examples=25, deadline=None)
@given(losses=st.lists(st.sampled_from([0.0, 0.01, 0.5, 1.0, 4.0, 9.0]), min_size=1,
                       max_size=12),
       exponent=st.sampled_from([0.0, 0.5, 1.0]), seed=st.integers(0, 2**16))
def test_prioritized_draws_are_proportional_to_the_priority_the_losses_set(losses, exponent,
                                                                           seed):
    replay = latent_replay(len(losses), PrioritizedSampler(exponent=exponent))
    ids = np.arange(len(losses))
    replay.update_priorities(ids, np.array(losses))
    priority = (np.array(losses) + 1e-6) ** exponent
    np.testing.assert_allclose(replay.sampler.priorities(ids), priority)
    batch = replay.sample(20_000, np.random.default_rng(seed), step=None)
    counts = np.bincount(batch.ids, minlength=len(losses))
    expected = priority / priority.sum() * 20_000
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected.max()) + 5
    assert (counts[expected < 1e-3] == 0).all()  # a loss of 0 is (almost) never drawn


@settings(max_examples=25, deadline=None)
@given(losses=st.lists(st.floats(0, 10), min_size=1, max_size=10),
       step=st.integers(0, 200), seed=st.integers(0, 2**16))
def test_importance_weights_are_n_times_p_to_the_minus_beta_over_the_batch_max(losses, step,
                                                                               seed):
    sampler = PrioritizedSampler(0.5, 0.4, anneal_from=50, anneal_to=150)
    replay = latent_replay(len(losses), sampler)
    replay.update_priorities(np.arange(len(losses)), np.array(losses))
    batch = replay.sample(64, np.random.default_rng(seed), step=step)
    priority = (np.array(losses) + 1e-6) ** 0.5
    raw = (len(losses) * priority[batch.ids] / priority.sum()) ** -old_beta(step, 50, 150, 0.4)
    np.testing.assert_allclose(batch.weights, raw / raw.max(), rtol=1e-5)
    assert batch.weights.dtype == np.float32


def test_the_uniform_sampler_ignores_feedback_and_weighs_nothing():
    replay = latent_replay(5)
    assert isinstance(replay.sampler, UniformSampler)
    before = replay.state_dict()
    replay.update_priorities(np.arange(5), np.full(5, 100.0))
    batch = replay.sample(2000, np.random.default_rng(0), step=3)
    assert batch.weights is None and set(batch.ids.tolist()) == set(range(5))
    assert np.bincount(batch.ids).min() > 300  # about 400 each
    assert replay.state_dict().keys() == before.keys()
    assert not any(key.startswith("sampler.") for key in before)


# ------------------------------------------------------------------------------ invariant
# 0-5: a step, 6: a terminating step, 7: a reset (time limit), 8-9: a sample and its feedback
ops_st = st.lists(st.integers(0, 9), min_size=1, max_size=80)


@settings(max_examples=60, deadline=None)
@given(ops=ops_st, capacity=st.integers(1, 20), stack=st.integers(1, 3), n=st.integers(1, 4))
def test_the_tree_is_positive_exactly_where_a_transition_can_be_sampled(ops, capacity, stack, n):
    """After any sequence of steps, resets (time limits), terminations and priority updates,
    wrapping the ring: a slot's priority is positive if and only if the replay would let its
    transition be sampled (frames stored, n-step window complete); len counts exactly those."""
    replay = PixelReplay(capacity, (1, 2, 2), stack, 1, block_items=3, n_step=n,
                         sampler=PrioritizedSampler())
    obs = np.zeros((stack, 2, 2), np.uint8)
    replay.add_reset(obs)
    rng = np.random.default_rng(0)
    for op in ops:
        if op <= 6 and replay.open:
            replay.add_step(np.zeros(1), 1.0, op == 6, obs)
        elif op <= 7:
            replay.add_reset(obs)
        elif len(replay):
            batch = replay.sample(4, rng, step=0)
            replay.update_priorities(batch.ids, rng.random(4))
        ids = np.arange(replay.oldest, replay.total, dtype=np.int64)
        positive = replay.sampler.priorities(ids % capacity) > 0
        np.testing.assert_array_equal(positive, replay.sampleable(ids))
        assert len(replay) == positive.sum()
        assert replay.sampler.tree.total == pytest.approx(
            replay.sampler.priorities(ids % capacity).sum())


# ------------------------------------------------------------------------------ state
@settings(max_examples=25, deadline=None)
@given(losses=st.lists(st.floats(0, 100), min_size=1, max_size=20), seed=st.integers(0, 2**16))
def test_sampler_state_round_trips_to_identical_draws(losses, seed):
    sampler = PrioritizedSampler(0.7, 0.3, 10, 90)
    replay = latent_replay(len(losses), sampler)
    replay.update_priorities(np.arange(len(losses)), np.array(losses))
    state = sampler.state_dict()
    assert set(state) == {"priorities", "max_priority"}
    copy = make_sampler(sampler.spec())
    assert copy.init_args() == sampler.init_args() and copy.spec()["kind"] == "PrioritizedSampler"
    twin = latent_replay(len(losses), copy)  # same entries, fresh priorities...
    copy.load_state_dict({k: np.array(v) for k, v in state.items()})  # ...then the saved ones
    assert copy.max_priority == sampler.max_priority
    a = replay.sample(32, np.random.default_rng(seed), step=40)
    b = twin.sample(32, np.random.default_rng(seed), step=40)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.weights, b.weights)


def test_a_sampler_serves_one_replay_and_states_do_not_mix():
    sampler = PrioritizedSampler()
    latent_replay(3, sampler)
    with pytest.raises(ValueError, match="serves one replay"):
        latent_replay(3, sampler)
    uniform, prioritized = latent_replay(3), latent_replay(3, PrioritizedSampler())
    with pytest.raises(ValueError, match="do not mix"):
        uniform.load_state_dict(prioritized.state_dict())
    with pytest.raises(ValueError, match="do not mix"):
        prioritized.load_state_dict(uniform.state_dict())


def test_the_tree_counts_against_memory():
    assert UniformSampler.slot_bytes == 0 and PrioritizedSampler.slot_bytes == TREE_BYTES_PER_SLOT
    uniform, prioritized = latent_replay(3), latent_replay(3, PrioritizedSampler())
    assert prioritized.nbytes - uniform.nbytes == prioritized.sampler.nbytes == 64 * 2 * 8
    assert prioritized.sampler.nbytes <= 64 * PrioritizedSampler.slot_bytes
    prioritized.retire("gone")
    assert prioritized.nbytes == 0


def test_conversion_carries_the_settings_and_the_max_priority():
    sampler = PrioritizedSampler(0.25, 0.5, 7, 70, epsilon=1e-3)
    pixel = PixelReplay(30, (1, 2, 2), 2, 1, n_step=4, gamma=0.5, sampler=sampler)
    pixel.add_reset(np.zeros((2, 2, 2), np.uint8))
    for _ in range(12):
        pixel.add_step(np.zeros(1), 0.0, False, np.zeros((2, 2, 2), np.uint8))
    pixel.update_priorities(np.arange(9), np.arange(9.0) ** 4)
    latent = convert_to_latent(pixel, lambda s: np.zeros((len(s), *LATENT)), LATENT, 40)
    assert latent.sampler is not sampler and latent.sampler.init_args() == sampler.init_args()
    assert latent.sampler.max_priority == pytest.approx((8**4 + 1e-3) ** 0.25)
    assert (latent.n_step, latent.gamma, len(latent), latent.waiting) == (4, 0.5, 9, 3)
    assert pixel.nbytes == 0  # the pixel replay's tree was released with it


# ------------------------------------------------------------------------------ old states
def old_layout(replay: PixelReplay | LatentReplay) -> tuple[dict, dict]:
    """(init args, state) as the code before samplers wrote them: a ``prioritized`` flag, no
    n_step or gamma, the tree's leaves and max priority at the top of the state."""
    init = {k: v for k, v in replay.init_args().items() if k not in ("n_step", "gamma", "sampler")}
    init["prioritized"] = isinstance(replay.sampler, PrioritizedSampler)
    state = {k.removeprefix("sampler."): np.array(v) for k, v in replay.state_dict().items()}
    return init, state


@pytest.mark.parametrize("prioritized", [True, False])
def test_a_replay_state_written_before_samplers_loads(prioritized):
    sampler = PrioritizedSampler() if prioritized else UniformSampler()
    replay = PixelReplay(20, (1, 2, 2), 2, 1, block_items=6, n_step=3, gamma=0.9,
                         sampler=sampler)
    frames = [np.full((2, 2, 2), i, np.uint8) for i in range(30)]
    replay.add_reset(frames[0])
    for i in range(1, 26):  # wraps; the episode is under way: entries 23, 24 wait
        replay.add_step(np.zeros(1), float(i), False, frames[i])
    replay.update_priorities(np.arange(6, 23), np.arange(6, 23) ** 2.0)
    init, state = old_layout(replay)
    if prioritized:  # the old code gave the waiting transitions a priority when recorded
        state["priorities"][[23 % 20, 24 % 20]] = 1.0
        assert set(state) >= {"priorities", "max_priority"} and init["prioritized"]
    fresh = PrioritizedSampler() if prioritized else UniformSampler()
    copy = PixelReplay(**resume_init_args(init, fresh, n_step=3, gamma=0.9))
    copy.load_state_dict(state)
    assert copy.sampler is fresh and (copy.n_step, copy.gamma) == (3, 0.9)
    assert len(copy) == len(replay) and copy.waiting == replay.waiting == 2
    for r in (replay, copy):  # both go on the same way
        r.add_step(np.zeros(1), 99.0, False, frames[26])
    a = replay.sample(64, np.random.default_rng(1), step=0)
    b = copy.sample(64, np.random.default_rng(1), step=0)
    for field in a.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    if prioritized:
        np.testing.assert_array_equal(copy.sampler.tree.tree, replay.sampler.tree.tree)
    with pytest.raises(ReplayError, match="resume with the run's own config"):
        resume_init_args(init, UniformSampler() if prioritized else PrioritizedSampler(), 3, 0.9)


def test_resume_takes_the_runs_sampler_and_refuses_another_kind():
    replay = latent_replay(4, PrioritizedSampler(0.5, 0.4, 0, 100), n_step=2)
    init = replay.init_args()
    assert init["sampler"]["kind"] == "PrioritizedSampler" and init["n_step"] == 2
    longer = PrioritizedSampler(0.5, 0.4, 0, 500)  # resume --set steps=...: a new schedule
    copy = LatentReplay(**resume_init_args(init, longer, n_step=7, gamma=0.1))
    assert copy.sampler is longer and (copy.n_step, copy.gamma) == (2, 0.9)  # the checkpoint's
    with pytest.raises(ReplayError, match="PrioritizedSampler, this run a UniformSampler"):
        resume_init_args(init, UniformSampler(), 2, 0.9)
