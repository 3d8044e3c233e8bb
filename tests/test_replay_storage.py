"""What both replays stand on (storage.py): the ring's n-step windows, which wait until they are
complete; blocks allocated on first write; reported bytes that are what the process holds; and
state dicts that give identical batches back."""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import given, settings
from hypothesis import strategies as st

from lever_transfer.replay import (
    BlockArray,
    LatentReplay,
    PixelReplay,
    PrioritizedSampler,
    convert_to_latent,
)

from .replay_reference import (
    ACTION_DIM,
    FRAME,
    episodes_st,
    fill_pixels,
    latents_of,
    pixel_window,
    play,
    reference_n_step,
    stack_of,
    still_open,
)


# ------------------------------------------------------------------------------ n-step returns
@settings(max_examples=50, deadline=None)
@given(episodes=episodes_st, stack=st.integers(1, 3), capacity=st.integers(1, 70),
       n=st.integers(1, 6), gamma=st.sampled_from([1.0, 0.5, 0.99]), seed=st.integers(0, 2**16))
def test_n_step_samples_are_complete_windows_summing_the_episode_rewards_that_follow(
        episodes, stack, capacity, n, gamma, seed):
    """Every sampled transition's window is complete (n steps stored, or ended by the
    episode's end); every complete one is sampled, with the reference return, discount and
    next observation; the incomplete ones wait (``waiting``) and are never drawn."""
    replay = PixelReplay(capacity, FRAME, stack, ACTION_DIM, block_items=4, n_step=n,
                         gamma=gamma)
    transitions, firsts = fill_pixels(replay, episodes)
    window = pixel_window(transitions, len(firsts), capacity, stack)
    open_first = firsts[-1] if still_open(episodes) else None
    walked = {t.entry: reference_n_step(transitions, t, n, gamma, open_first)
              for t in window.values()}
    complete = {e: w for e, w in walked.items() if w is not None}
    assert len(replay) == len(complete) and replay.waiting == len(walked) - len(complete)
    if not complete:
        with pytest.raises(RuntimeError, match="no sampleable transition"):
            replay.sample(1, np.random.default_rng(seed))
        return
    batch = replay.sample(3000, np.random.default_rng(seed))
    newest = batch.obs[:, -3:, 0, 0]  # the newest frame spells the transition's entry
    entries = newest[:, 0].astype(np.int64) + 256 * newest[:, 1].astype(np.int64)
    np.testing.assert_array_equal(entries, batch.ids)
    incomplete = sorted(set(entries.tolist()) - set(complete))
    assert not incomplete, f"sampled entries whose n-step window is incomplete: {incomplete}"
    assert set(entries.tolist()) == set(complete)  # ...and every complete one is sampled
    expected = np.array([complete[e] for e in entries.tolist()])
    np.testing.assert_allclose(batch.reward, expected[:, 0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batch.discount, expected[:, 1], rtol=1e-6)
    for i in range(0, 3000, 11):
        first = firsts[entries[i]]
        np.testing.assert_array_equal(batch.next_obs[i],
                                      stack_of(int(expected[i, 2]), first, stack))


def test_n_step_return_of_a_small_hand_computed_case():
    """Rewards 1, 2, 4 then termination; gamma 0.5, n 2 and 3 (truncated at the end)."""
    for n in (2, 3):
        replay = LatentReplay(10, (1, 1, 2), 1, n_step=n, gamma=0.5)
        replay.add_reset(latents_of(0, 1, 1))
        for entry, (reward, done) in enumerate([(1.0, False), (2.0, False), (4.0, True)], 1):
            replay.add_step(np.zeros(1), reward, done, latents_of(entry, 1, 1))
        batch = replay.sample(200, np.random.default_rng(0))
        got = {int(z[0, 0]) // 8: (r, d, int(nz[0, 0]) // 8) for z, r, d, nz in
               zip(batch.latent, batch.reward, batch.discount, batch.next_latent)}
        if n == 2:
            assert got == {0: (1 + 0.5 * 2, 0.25, 2), 1: (2 + 0.5 * 4, 0.0, 3), 2: (4.0, 0.0, 3)}
        else:
            assert got[0] == (1 + 0.5 * 2 + 0.25 * 4, 0.0, 3)


def test_a_window_the_newest_entry_cuts_waits_until_it_is_complete():
    """n = 3: a transition is drawn only once its 3 steps are stored, or its episode ended
    (termination: discount 0; a reset after a time limit: gamma^m); the reference
    data-efficient Rainbow code never samples a window that is still being written."""
    replay = LatentReplay(20, (1, 1, 2), 1, n_step=3, gamma=0.5)

    def drawn() -> dict[int, tuple[float, float]]:
        batch = replay.sample(300, np.random.default_rng(0))
        return {int(i): (float(r), float(d))
                for i, r, d in zip(batch.ids, batch.reward, batch.discount)}

    replay.add_reset(latents_of(0, 1, 1))
    replay.add_step(np.zeros(1), 1.0, False, latents_of(1, 1, 1))
    replay.add_step(np.zeros(1), 2.0, False, latents_of(2, 1, 1))
    assert len(replay) == 0 and replay.waiting == 2
    with pytest.raises(RuntimeError, match="no sampleable transition"):
        replay.sample(1, np.random.default_rng(0))
    replay.add_step(np.zeros(1), 4.0, False, latents_of(3, 1, 1))  # entry 0's window is full
    assert len(replay) == 1 and replay.waiting == 2
    assert drawn() == {0: (1 + 0.5 * 2 + 0.25 * 4, 0.125)}
    replay.add_step(np.zeros(1), 8.0, True, latents_of(4, 1, 1))  # termination ends them all
    assert len(replay) == 4 and replay.waiting == 0
    assert drawn() == {0: (3.0, 0.125), 1: (2 + 2 + 2.0, 0.0), 2: (4 + 4.0, 0.0), 3: (8.0, 0.0)}
    replay.add_reset(latents_of(5, 1, 1))  # a time-limited episode: 2 steps, then a reset
    replay.add_step(np.zeros(1), 16.0, False, latents_of(6, 1, 1))
    replay.add_step(np.zeros(1), 32.0, False, latents_of(7, 1, 1))
    assert len(replay) == 4 and replay.waiting == 2
    replay.add_reset(latents_of(8, 1, 1))  # the episode's end closes its windows
    assert len(replay) == 6 and replay.waiting == 0
    assert drawn()[5] == (16 + 16.0, 0.25) and drawn()[6] == (32.0, 0.5)


# ------------------------------------------------------------------------------ memory, state
def test_block_array_allocates_on_write_and_gathers_across_blocks():
    array = BlockArray(10, (2,), np.int32, block_items=4)  # blocks of 4, 4, 2
    assert array.nbytes == 0 and array.item_nbytes == 8
    array.set(np.array([0, 5, 9]), np.array([[1, 1], [5, 5], [9, 9]]))
    assert array.nbytes == 10 * 8  # all three blocks
    np.testing.assert_array_equal(array.get(np.array([[9, 0], [5, 9]]))[..., 0], [[9, 1], [5, 9]])
    big = np.arange(5000) % 10  # the bulk path
    values = np.array([1, 0, 0, 0, 0, 5, 0, 0, 0, 9])
    np.testing.assert_array_equal(array.get(big)[:, 0], values[big])
    array.release(1)
    assert array.nbytes == 6 * 8 and set(array.state_dict()) == {"0", "2"}
    with pytest.raises(IndexError):
        array.get(np.array([5]))
    with pytest.raises(IndexError):
        array.get(np.array([10]))
    copy = BlockArray(10, (2,), np.int32, block_items=4)
    copy.load_state_dict(array.state_dict())
    np.testing.assert_array_equal(copy.get(np.array([0, 9])), array.get(np.array([0, 9])))


def test_reported_bytes_are_the_allocated_blocks():
    replay = PixelReplay(1000, (3, 10, 10), 3, ACTION_DIM, block_items=100)
    assert replay.nbytes == 0
    replay.add_reset(np.zeros((9, 10, 10), np.uint8))
    for _ in range(149):
        replay.add_step(np.zeros(2), 0.0, False, np.zeros((9, 10, 10), np.uint8))
    assert replay.nbytes == 200 * replay.bytes_per_entry  # two blocks of 100 entries
    latent = LatentReplay(50, (4, 2, 50), 6, block_items=30)
    latent.add_reset(np.zeros((4, 2, 50)))
    assert latent.nbytes == 30 * latent.bytes_per_entry


def test_state_dict_round_trip_gives_identical_batches():
    pixel = PixelReplay(30, FRAME, 3, ACTION_DIM, block_items=7)
    fill_pixels(pixel, [(10, False), (15, True), (9, False)])  # wrapped, mid-episode
    latent = LatentReplay(25, (3, 2, 4), ACTION_DIM, np.float16, block_items=6)
    play([(12, True), (20, False)], lambda e, f: latent.add_reset(np.full((3, 2, 4), e)),
         lambda a, r, d, e, f: latent.add_step(a, r, d, np.full((3, 2, 4), e)))
    for replay, make in ((pixel, PixelReplay), (latent, LatentReplay)):
        state = replay.state_dict()
        assert all(type(v) is np.ndarray for v in state.values())
        assert state["total"].shape == () and state["total"].dtype == np.int64
        # as the checkpoint code does: contiguous copies (0-d counters come back 1-d)
        stored = safetensors.numpy.load(safetensors.numpy.save(
            {k: np.ascontiguousarray(v) for k, v in state.items()}))
        copy = make(**replay.init_args())
        copy.load_state_dict(stored)
        assert len(copy) == len(replay) and copy.nbytes == replay.nbytes
        assert_same_batches(replay, copy, seed=5)
        item = (stack_of(99, 90, 3) if replay is pixel else np.full((3, 2, 4), 99))
        for r in (replay, copy):  # both go on the same way: counters and the open episode
            r.add_step(np.ones(2), 77.0, False, item)
        assert_same_batches(replay, copy, seed=6)
        assert len(copy) == len(replay)


def assert_same_batches(a, b, seed: int) -> None:
    """Sampling both with the same Generator state gives identical batches."""
    x, y = a.sample(64, np.random.default_rng(seed)), b.sample(64, np.random.default_rng(seed))
    for field in x.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(x, field), getattr(y, field))


def test_state_dict_holds_only_allocated_blocks():
    replay = PixelReplay(100, FRAME, 3, ACTION_DIM, block_items=10)
    fill_pixels(replay, [(14, False)])  # 15 entries: two blocks
    blocks = {key.split(".")[1] for key in replay.state_dict() if "." in key}
    assert blocks == {"0", "1"}


def test_a_replay_whose_last_block_holds_one_entry_checkpoints(tmp_path):
    """Capacity = k * block_items + 1 (an Atari run of N steps has N + 1 entries): the last
    block's record fields are one-item views with odd strides; saving them must work."""
    from lever_transfer.checkpoint import load_checkpoint, save_checkpoint

    replay = PixelReplay(9, FRAME, 2, ACTION_DIM, block_items=4)
    fill_pixels(replay, [(8, False)])
    assert replay.meta.allocated(2) and replay.meta._block_len(2) == 1
    path = save_checkpoint(tmp_path, 8, {"replay": replay.state_dict()})
    _, state = load_checkpoint(path)
    copy = PixelReplay(**replay.init_args())
    copy.load_state_dict(state["replay"])
    np.testing.assert_array_equal(copy.stacks(np.arange(9)), replay.stacks(np.arange(9)))


def fill_random(replay: PixelReplay, frames: np.ndarray, steps: int) -> None:
    replay.add_reset(frames[0])
    for i in range(1, steps):
        replay.add_step(np.zeros(ACTION_DIM), 1.0, False, frames[i % len(frames)])


def test_reported_bytes_are_what_the_process_allocates():
    """tracemalloc sees numpy's allocations: the replay's nbytes is what it really holds, to
    within 40 KB (less than its 64 KB priority tree), in the pixel replay and in the latent
    replay that conversion makes."""
    import tracemalloc

    frames = np.random.default_rng(0).integers(0, 256, (8, 9, 32, 32), dtype=np.uint8)
    encode = lambda s: np.zeros((len(s), 4, 2, 50))  # noqa: E731
    warm = PixelReplay(40, (3, 32, 32), 3, ACTION_DIM, block_items=8,
                       sampler=PrioritizedSampler())
    fill_random(warm, frames, 39)  # first calls import what they use: not replay memory
    convert_to_latent(warm, encode, (4, 2, 50), capacity=80).sample(4, np.random.default_rng(0))
    tracemalloc.start()
    try:
        pixel = PixelReplay(4000, (3, 32, 32), 3, ACTION_DIM, block_items=500,
                            sampler=PrioritizedSampler())
        fill_random(pixel, frames, 3999)
        assert pixel.nbytes > 12_000_000 and pixel.sampler.nbytes == 65_536
        assert abs(tracemalloc.get_traced_memory()[0] - pixel.nbytes) < 40_000
        latent = convert_to_latent(pixel, encode, (4, 2, 50), capacity=8000)
        del pixel
        assert abs(tracemalloc.get_traced_memory()[0] - latent.nbytes) < 40_000
    finally:
        tracemalloc.stop()
