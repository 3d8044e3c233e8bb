"""The pixel replay (pixel.py): every frame stored once, frame stacks rebuilt when sampling,
checked against the reference in tests/replay_reference.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lever_transfer.replay import PixelReplay

from .replay_reference import ACTION_DIM, FRAME, episodes_st, fill_pixels, pixel_window, stack_of


@settings(max_examples=60, deadline=None)
@given(episodes=episodes_st, stack=st.integers(1, 4), capacity=st.integers(1, 70),
       block=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_pixel_replay_samples_exactly_the_reference_transitions_in_its_window(
        episodes, stack, capacity, block, seed):
    replay = PixelReplay(capacity, FRAME, stack, ACTION_DIM, block_items=block)
    transitions, firsts = fill_pixels(replay, episodes)
    total, oldest = len(firsts), max(0, len(firsts) - capacity)
    window = pixel_window(transitions, total, capacity, stack)
    assert len(replay) == len(window)
    rebuildable = [e for e in range(oldest, total) if max(e - stack + 1, firsts[e]) >= oldest]
    np.testing.assert_array_equal(replay.entries_to_convert(), rebuildable)
    for e, obs in zip(rebuildable, replay.stacks(np.array(rebuildable, np.int64))):
        np.testing.assert_array_equal(obs, stack_of(e, firsts[e], stack))
    if not window:
        with pytest.raises(RuntimeError):
            replay.sample(1, np.random.default_rng(seed))
        return
    batch = replay.sample(3000, np.random.default_rng(seed))
    assert batch.obs.shape == (3000, 3 * stack, 8, 8) and batch.obs.dtype == np.uint8
    assert batch.action.dtype == batch.reward.dtype == batch.discount.dtype == np.float32
    for i in range(0, 3000, 7):  # every sampled transition is a reference transition
        t = window[float(batch.reward[i])]
        np.testing.assert_array_equal(batch.obs[i], stack_of(t.entry, t.first, stack))
        np.testing.assert_array_equal(batch.next_obs[i], stack_of(t.entry + 1, t.first, stack))
        np.testing.assert_array_equal(batch.action[i], t.action)
        assert batch.discount[i] == t.discount
    assert set(batch.reward.tolist()) == set(window)  # ...and every one of them is sampled


def test_stacks_at_episode_starts_repeat_the_first_frame():
    replay = PixelReplay(20, FRAME, 3, ACTION_DIM)
    fill_pixels(replay, [(4, True), (3, False)])
    stacks = replay.stacks(np.arange(8))
    numbers = stacks[:, 0::3, 0, 0]  # channel 0 of each stacked frame spells its entry
    assert numbers.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4],
                                [5, 5, 5], [5, 5, 6], [5, 6, 7]]


def test_add_step_needs_an_episode_and_observations_must_fit():
    replay = PixelReplay(10, FRAME, 3, ACTION_DIM)
    obs = stack_of(0, 0, 3)
    with pytest.raises(RuntimeError, match="add_reset"):
        replay.add_step(np.zeros(2), 0.0, False, obs)
    replay.add_reset(obs)
    replay.add_step(np.zeros(2), 0.0, True, obs)
    with pytest.raises(RuntimeError, match="add_reset"):
        replay.add_step(np.zeros(2), 0.0, False, obs)
    with pytest.raises(ValueError, match="does not fit"):
        replay.add_reset(obs.astype(np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        replay.add_reset(obs[:3])
    assert len(replay) == 1 and replay.total == 2  # the refused calls changed nothing


def test_realistic_pixel_sampling_is_right():
    rng = np.random.default_rng(0)
    replay = PixelReplay(600, (3, 100, 100), 3, 6, block_items=100)
    pool = rng.integers(0, 256, (16, 9, 100, 100), dtype=np.uint8)
    replay.add_reset(pool[0])
    for i in range(1, 900):  # wraps around; episodes of 250 steps
        if i % 251 == 0:
            replay.add_reset(pool[i % 16])
        else:
            replay.add_step(np.full(6, i, np.float32), float(replay.total - 1), False, pool[i % 16])
    batch = replay.sample(128, rng)
    assert batch.obs.shape == batch.next_obs.shape == (128, 9, 100, 100)
    assert batch.action.shape == (128, 6) and batch.reward.shape == (128,)
    entries = batch.reward.astype(np.int64)  # rewards are the entry numbers here
    np.testing.assert_array_equal(batch.obs, replay.stacks(entries))
    np.testing.assert_array_equal(batch.next_obs, replay.stacks(entries + 1))
    # its speed is benchmarks/update_speed.py's "of which sampling (ms)" row, not a test
