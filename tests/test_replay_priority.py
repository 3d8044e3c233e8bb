"""Priorities (priority.py): the sum tree draws in proportion and never a zero priority, and a
prioritized replay's tree is positive exactly on the transitions it may sample, through
conversion and checkpoints. The samplers around the tree are tests/test_replay_samplers.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lever_transfer.replay import (
    LatentReplay,
    PixelReplay,
    PrioritizedSampler,
    convert_to_latent,
)
from lever_transfer.replay.priority import SumTree

from .replay_reference import (
    ACTION_DIM,
    FRAME,
    episodes_st,
    fill_pixels,
    pixel_window,
    reference_n_step,
    still_open,
)


@settings(max_examples=40, deadline=None)
@given(priorities=st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0, 1e-3]), min_size=1, max_size=40),
       seed=st.integers(0, 2**16))
def test_sum_tree_draws_in_proportion_and_never_a_zero_priority(priorities, seed):
    tree = SumTree(len(priorities))
    tree.set(np.arange(len(priorities)), priorities)
    assert tree.total == pytest.approx(sum(priorities))
    if sum(priorities) == 0:
        with pytest.raises(RuntimeError):
            tree.draw(4, np.random.default_rng(seed))
        return
    counts = np.bincount(tree.draw(20_000, np.random.default_rng(seed)), minlength=len(priorities))
    expected = np.array(priorities) / sum(priorities) * 20_000
    assert (counts[np.array(priorities) == 0] == 0).all()
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected.max()) + 5
    rebuilt = SumTree(len(priorities))
    rebuilt.load(tree.leaves_array().copy())
    np.testing.assert_array_equal(rebuilt.tree, tree.tree)


def positive_entries(replay: PixelReplay | LatentReplay) -> set[int]:
    """Entries in the ring whose slot has a positive priority."""
    ids = np.arange(replay.oldest, replay.total, dtype=np.int64)
    return set(ids[replay.sampler.priorities(ids % replay.capacity) > 0].tolist())


@settings(max_examples=40, deadline=None)
@given(episodes=episodes_st, stack=st.integers(1, 3), capacity=st.integers(1, 50),
       n=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_prioritized_pixel_replay_samples_only_valid_transitions(episodes, stack, capacity, n,
                                                                 seed):
    """The priority tree is positive exactly on the sampleable transitions: frames stored and
    n-step window complete."""
    replay = PixelReplay(capacity, FRAME, stack, ACTION_DIM, block_items=4, n_step=n,
                         sampler=PrioritizedSampler(beta_start=0.4, anneal_from=0, anneal_to=10))
    transitions, firsts = fill_pixels(replay, episodes)
    window = pixel_window(transitions, len(firsts), capacity, stack)
    open_first = firsts[-1] if still_open(episodes) else None
    complete = {t.entry for t in window.values()
                if reference_n_step(transitions, t, n, 0.5, open_first) is not None}
    assert positive_entries(replay) == complete and len(replay) == len(complete)
    if not complete:
        return
    rng = np.random.default_rng(seed)
    batch = replay.sample(400, rng, step=0)
    assert set(batch.ids.tolist()) <= complete
    assert batch.weights.max() == 1.0 and (batch.weights > 0).all()
    favourite = batch.ids[0]  # raise one transition's priority: it dominates the draws
    replay.update_priorities(batch.ids, np.where(batch.ids == favourite, 1e6, 1e-6))
    ids = replay.sample(400, rng).ids
    assert (ids == favourite).mean() > 0.9 or len(complete) == 1


def test_priorities_survive_conversion_and_checkpoints():
    """Priorities move with their entries into the latent replay; the transitions whose 3-step
    window is still open stay at 0 there and get the max priority once it is complete."""
    pixel = PixelReplay(40, FRAME, 3, ACTION_DIM, block_items=4, n_step=3,
                        sampler=PrioritizedSampler())
    fill_pixels(pixel, [(12, True), (9, False)])  # entries 0..22; 20 and 21 wait for step 23
    ids = np.arange(pixel.oldest, pixel.total - 1)
    pixel.update_priorities(ids, ids.astype(np.float64) ** 2)  # exponent 0.5: priority = id
    assert pixel.sampler.max_priority == pytest.approx(19.0)  # waiting ones are not updated
    before = {int(i): float(p) for i, p in zip(
        pixel.entries_to_convert(), pixel.sampler.priorities(pixel.entries_to_convert() % 40))}
    latent = convert_to_latent(pixel, lambda stacks: np.zeros((len(stacks), 1, 1, 2)),
                               (1, 1, 2), capacity=100)
    assert isinstance(latent.sampler, PrioritizedSampler)
    assert latent.n_step == 3 and latent.sampler.max_priority == pytest.approx(19.0)
    assert before[12] == before[20] == before[21] == 0.0 and before[11] == pytest.approx(11.0)
    after = {int(i): float(p) for i, p in enumerate(latent.sampler.priorities(np.arange(23)))}
    assert after == pytest.approx(before)  # no wrap-around here: same entry numbers
    copy = LatentReplay(**latent.init_args())
    copy.load_state_dict({k: np.array(v) for k, v in latent.state_dict().items()})
    np.testing.assert_array_equal(copy.sampler.tree.tree, latent.sampler.tree.tree)
    a = latent.sample(64, np.random.default_rng(3), step=0)
    b = copy.sample(64, np.random.default_rng(3), step=0)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.weights, b.weights)
    latent.add_step(np.zeros(2), 0.0, False, np.zeros((1, 1, 2)))  # entry 20's window is full
    assert latent.sampler.priorities(np.array([20, 21])) == pytest.approx([19.0, 0.0])
