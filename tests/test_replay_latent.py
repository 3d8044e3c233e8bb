"""The latent replay (latent.py): K augmented latents per observation for N networks, one copy
sampled per transition, checked against the reference in tests/replay_reference.py."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lever_transfer.replay import LatentReplay

from .replay_reference import ACTION_DIM, episodes_st, latents_of, play


@settings(max_examples=40, deadline=None)
@given(episodes=episodes_st, capacity=st.integers(1, 70), k=st.integers(1, 3),
       n=st.integers(1, 2), half=st.booleans(), block=st.integers(1, 9),
       seed=st.integers(0, 2**16))
def test_latent_replay_samples_one_copy_per_transition(episodes, capacity, k, n, half, block,
                                                       seed):
    replay = LatentReplay(capacity, (k, n, 2), ACTION_DIM, np.float16 if half else np.float32,
                          block_items=block)
    transitions, firsts = play(
        episodes, lambda e, f: replay.add_reset(latents_of(e, k, n)),
        lambda a, r, d, e, f: replay.add_step(a, r, d, latents_of(e, k, n)))
    window = {t.reward: t for t in transitions if t.entry >= len(firsts) - capacity}
    assert len(replay) == len(window)
    if not window:
        return
    batch = replay.sample(2000, np.random.default_rng(seed))
    assert batch.latent.dtype == batch.next_latent.dtype == np.float32
    assert batch.latent.shape == batch.next_latent.shape == (2000, n, 2)
    code, next_code = batch.latent[:, :, 0].astype(np.int64), batch.next_latent[:, :, 0]
    entry, copy, net = code // 8, code % 8 // 2, code % 2
    assert (net == np.arange(n)).all() and (copy == copy[:, :1]).all()  # one copy for all N
    np.testing.assert_array_equal(next_code, code + 8)  # next obs: entry + 1, the same copy
    for i in range(2000):
        t = window[float(batch.reward[i])]
        assert entry[i, 0] == t.entry and batch.discount[i] == t.discount
        np.testing.assert_array_equal(batch.action[i], t.action)
    assert set(batch.reward.tolist()) == set(window)
