"""Replay: stacks rebuilt from single frames, conversion to latents, capacity, memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lever_transfer.errors import ReplayError
from lever_transfer.replay import (LatentReplay, PixelReplay, capacity_from_memory,
                                   convert_to_latent, grown_capacity, paper_capacity)

FRAME = (1, 2, 2)  # tiny frames; every frame's pixels hold its own global frame number
STACK = 3


class Reference:
    """What a naive replay would hold: every transition with explicit stacked obs/next_obs."""

    def __init__(self) -> None:
        self.transitions: list[tuple[tuple, tuple, float, float]] = []
        self.frame = 0

    def new_frame(self) -> np.ndarray:
        self.frame += 1
        return np.full(FRAME, self.frame % 256, np.uint8)


def fill(replay: PixelReplay, episodes: list[tuple[int, bool]], ref: Reference) -> None:
    """Episodes of (length, terminated at the end); rewards are unique ids."""
    for length, terminated in episodes:
        stack = [ref.new_frame()] * STACK
        replay.add_reset(np.concatenate(stack))
        for t in range(length):
            nxt = stack[1:] + [ref.new_frame()]
            end = t == length - 1
            reward = float(len(ref.transitions))
            replay.add_step(np.array([reward], np.float32), reward, terminated and end,
                            np.concatenate(nxt))
            ref.transitions.append((key(np.concatenate(stack)), key(np.concatenate(nxt)), reward,
                                    0.0 if terminated and end else 1.0))
            stack = nxt


def key(obs: np.ndarray) -> tuple:
    return tuple(obs[:, 0, 0].tolist())


def batch_keys(batch) -> set:
    return {(key(o), key(n), float(r), float(d))
            for o, n, r, d in zip(batch.obs, batch.next_obs, batch.reward, batch.discount)}


episodes_strategy = st.lists(st.tuples(st.integers(1, 12), st.booleans()), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(episodes=episodes_strategy, capacity=st.integers(4, 60), block=st.integers(1, 9),
       seed=st.integers(0, 2**16))
def test_sampled_transitions_are_real_and_in_the_window(episodes, capacity, block, seed):
    replay, ref = PixelReplay(capacity, FRAME, STACK, 1, block_items=block), Reference()
    fill(replay, episodes, ref)
    entries = sum(n + 1 for n, _ in episodes)
    window = {t for t in ref.transitions if t[2] >= 0}
    assert len(replay) <= len(ref.transitions)
    if entries <= capacity:  # nothing evicted: every transition is there
        assert len(replay) == len(ref.transitions)
    if len(replay) == 0:
        return
    sampled = batch_keys(replay.sample(64, np.random.default_rng(seed)))
    assert sampled <= window
    # the newest transition is always sampleable once enough draws are made
    many = batch_keys(replay.sample(4000, np.random.default_rng(seed)))
    assert len(many) == len(replay)


def test_stacks_at_episode_start_repeat_the_first_frame():
    replay, ref = PixelReplay(20, FRAME, STACK, 1), Reference()
    fill(replay, [(4, False)], ref)
    first = replay.stacks(np.array([0]))[0]
    assert key(first) == (1, 1, 1)
    assert key(replay.stacks(np.array([1]))[0]) == (1, 1, 2)
    assert key(replay.stacks(np.array([4]))[0]) == (3, 4, 5)


def channel_mean_encoder(k: int):
    """Deterministic encode: per-entry mean pixel, plus the augmentation index."""
    def encode(stacks: np.ndarray) -> np.ndarray:
        means = stacks.reshape(len(stacks), STACK, -1).mean(axis=2)  # [n, S]
        return np.stack([means + i for i in range(k)], axis=1)[:, :, None, :].astype(np.float32)
    return encode


@settings(max_examples=40, deadline=None)
@given(episodes=episodes_strategy, capacity=st.integers(4, 60), block=st.integers(1, 9))
def test_conversion_keeps_every_transition_and_encodes_the_stored_pixels(episodes, capacity, block):
    replay, ref = PixelReplay(capacity, FRAME, STACK, 1, block_items=block), Reference()
    fill(replay, episodes, ref)
    before = len(replay)
    ids = replay.entries_to_convert()
    expected = channel_mean_encoder(2)(replay.stacks(ids)) if len(ids) else None
    rewards_before = batch_keys(replay.sample(3000, np.random.default_rng(0))) if before else set()
    latent = convert_to_latent(replay, channel_mean_encoder(2), (2, 1, STACK), capacity=200)
    assert len(latent) == before
    if before == 0:
        return
    stored = latent.latents.get(np.arange(len(ids)))
    np.testing.assert_array_equal(stored, expected)
    batch = latent.sample(3000, np.random.default_rng(1))
    assert {(float(r), float(d)) for r, d in zip(batch.reward, batch.discount)} == \
        {(r, d) for _, _, r, d in rewards_before}
    # latent of obs and next obs come from the same augmentation copy
    assert np.all((batch.latent[:, 0, 0] - np.floor(batch.latent[:, 0, 0])) ==
                  (batch.next_latent[:, 0, 0] - np.floor(batch.next_latent[:, 0, 0])))
    with pytest.raises(RuntimeError):
        replay.sample(1, np.random.default_rng(0))


def test_the_episode_under_way_continues_after_conversion():
    replay, ref = PixelReplay(100, FRAME, STACK, 1), Reference()
    fill(replay, [(5, False)], ref)
    latent = convert_to_latent(replay, channel_mean_encoder(1), (1, 1, STACK), capacity=100)
    latent.add_step(np.array([9.0], np.float32), 99.0, False, np.full((1, 1, STACK), 7.0, np.float32))
    assert len(latent) == 6
    batch = latent.sample(500, np.random.default_rng(0))
    bridge = batch.reward == 99.0
    assert bridge.any()
    assert np.all(batch.next_latent[bridge] == 7.0)


def test_conversion_releases_pixel_memory_as_it_goes():
    replay, ref = PixelReplay(400, FRAME, STACK, 1, block_items=16), Reference()
    fill(replay, [(99, False)] * 4, ref)
    peak = []

    def encode(stacks: np.ndarray) -> np.ndarray:
        peak.append(replay.frames.nbytes)
        return channel_mean_encoder(1)(stacks)

    start = replay.frames.nbytes
    latent = convert_to_latent(replay, encode, (1, 1, STACK), capacity=400, chunk=32)
    assert peak[-1] <= start / 10  # most frame blocks are gone before the last chunk
    assert replay.nbytes == 0 and latent.nbytes > 0


def test_capacity_follows_the_paper_formula():
    # section 4.2 with the paper's numbers: C=1000, P=3x100x100, N=2, K=4, L=50
    assert paper_capacity(1000, 30000, networks=2, augmentations=4, latent_dim=50) == 18750
    pixels = PixelReplay(10, (3, 100, 100), 3, 6)
    latents = LatentReplay(10, (4, 2, 50), 6)
    assert latents.latents.item_nbytes == 4 * 2 * 4 * 50
    assert grown_capacity(1000, pixels.frames.item_nbytes, latents.latents.item_nbytes) == 18750
    real = grown_capacity(1000, pixels.bytes_per_entry, latents.bytes_per_entry)
    assert real == 1000 * pixels.bytes_per_entry // latents.bytes_per_entry
    assert grown_capacity(1000, pixels.bytes_per_entry, latents.bytes_per_entry, 5000) == 5000
    half = LatentReplay(10, (4, 2, 50), 6, np.float16)
    assert half.latents.item_nbytes == 2 * 2 * 4 * 50


@given(c=st.integers(1, 10**6), p=st.integers(1, 10**5), n=st.integers(1, 4),
       k=st.integers(1, 8), dim=st.integers(1, 1024))
def test_paper_capacity_is_the_floor_of_the_byte_ratio(c, p, n, k, dim):
    assert paper_capacity(c, p, n, k, dim) == (c * p) // (4 * n * k * dim)
    assert grown_capacity(c, p, 4 * n * k * dim) == paper_capacity(c, p, n, k, dim)


def test_memory_budget_sets_the_capacity_and_refuses_too_small_ones():
    entry = PixelReplay(1, (3, 100, 100), 3, 6).bytes_per_entry
    assert capacity_from_memory(30_000_000, entry, 128) == 30_000_000 // entry
    with pytest.raises(ReplayError, match="raise --replay-memory to at least"):
        capacity_from_memory(1_000_000, entry, 128)


def test_reported_bytes_are_the_allocated_arrays():
    replay, ref = PixelReplay(1000, (3, 10, 10), STACK, 2, block_items=100), Reference()
    assert replay.nbytes == 0
    for _ in range(150):
        replay.add_reset(np.zeros((9, 10, 10), np.uint8)) if replay.total == 0 else \
            replay.add_step(np.zeros(2, np.float32), 0.0, False, np.zeros((9, 10, 10), np.uint8))
    assert replay.nbytes == 200 * replay.bytes_per_entry  # two blocks of 100 entries


def test_state_dict_round_trip_gives_identical_batches():
    replay, ref = PixelReplay(30, FRAME, STACK, 1, block_items=7), Reference()
    fill(replay, [(10, False), (15, True), (9, False)], ref)
    copy = PixelReplay(**replay.init_args())
    copy.load_state_dict(replay.state_dict())
    a = replay.sample(32, np.random.default_rng(5))
    b = copy.sample(32, np.random.default_rng(5))
    for field in ("obs", "next_obs", "action", "reward", "discount"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert len(copy) == len(replay)
    latent = convert_to_latent(replay, channel_mean_encoder(3), (3, 1, STACK), capacity=64)
    copy = LatentReplay(**latent.init_args())
    copy.load_state_dict(latent.state_dict())
    a, b = latent.sample(16, np.random.default_rng(2)), copy.sample(16, np.random.default_rng(2))
    np.testing.assert_array_equal(a.latent, b.latent)
