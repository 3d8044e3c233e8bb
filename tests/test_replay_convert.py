"""LeVER's switch (convert.py): pixels re-encoded into latents in chunks, every transition kept
and the buffer never held twice; and the capacity and memory budget that size the replays."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lever_transfer.replay.convert as convert_module
from lever_transfer.errors import ReplayError
from lever_transfer.replay import (
    LatentReplay,
    PixelReplay,
    capacity_from_memory,
    convert_to_latent,
    grown_capacity,
    latent_entry_bytes,
    paper_capacity,
    parse_memory,
)
from lever_transfer.replay.pixel import pixel_entry_bytes

from .replay_reference import ACTION_DIM, FRAME, episodes_st, fill_pixels, pixel_window, stack_of


# ------------------------------------------------------------------------------ conversion
def mean_encoder(k: int) -> Callable[[np.ndarray], np.ndarray]:
    """Deterministic encode: per-channel means, shifted by copy (1000 k) and network (500 n)."""
    def encode(stacks: np.ndarray) -> np.ndarray:
        means = stacks.reshape(*stacks.shape[:2], 64).mean(axis=2)  # [n, S*C]: 8x8 pixels each
        shift = 1000 * np.arange(k)[:, None, None] + 500 * np.arange(2)[None, :, None]
        return (means[:, None, None, :] + shift).astype(np.float32)  # [n, K, N=2, S*C]
    return encode


@settings(max_examples=50, deadline=None)
@given(episodes=episodes_st, stack=st.integers(1, 3), capacity=st.integers(1, 60),
       latent_capacity=st.integers(1, 120), block=st.integers(1, 9), chunk=st.integers(1, 12),
       k=st.integers(1, 2), half=st.booleans())
def test_conversion_keeps_every_transition_and_encodes_the_stored_pixels(
        episodes, stack, capacity, latent_capacity, block, chunk, k, half):
    pixel = PixelReplay(capacity, FRAME, stack, ACTION_DIM, block_items=block)
    transitions, firsts = fill_pixels(pixel, episodes)
    total = len(firsts)
    window = pixel_window(transitions, total, capacity, stack)
    ids = pixel.entries_to_convert()
    kept = ids[-latent_capacity:]
    expected = mean_encoder(k)(pixel.stacks(kept))
    dtype = np.float16 if half else np.float32
    latent = convert_to_latent(pixel, mean_encoder(k), (k, 2, 3 * stack), latent_capacity,
                               dtype, chunk=chunk)
    # every convertible entry that fits, newest kept, encoded from the stored pixels
    assert latent.total == kept.size and latent.capacity == latent_capacity
    np.testing.assert_array_equal(latent.latents.get(np.arange(kept.size)),
                                  expected.astype(dtype))
    survivors = {r: t for r, t in window.items() if kept.size and t.entry >= kept[0]}
    if latent_capacity >= ids.size:
        assert survivors == window
    assert len(latent) == len(survivors)
    with pytest.raises(RuntimeError, match="converted"):
        pixel.sample(1, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="converted"):
        len(pixel)
    assert pixel.nbytes == 0
    if survivors:
        batch = latent.sample(2000, np.random.default_rng(1))
        assert set(batch.reward.tolist()) == set(survivors)
        for i in range(0, 2000, 5):
            t = survivors[float(batch.reward[i])]
            copy = int(batch.latent[i, 0, 0] // 1000)
            want = mean_encoder(k)(np.stack([stack_of(t.entry, t.first, stack),
                                             stack_of(t.entry + 1, t.first, stack)]))
            np.testing.assert_array_equal(batch.latent[i], want[0, copy].astype(dtype))
            np.testing.assert_array_equal(batch.next_latent[i], want[1, copy].astype(dtype))
            assert batch.discount[i] == t.discount
    length, terminated = episodes[-1]
    goes_on = not (terminated and length) and kept.size > 0 and kept[-1] == total - 1
    check_the_episode_goes_on(latent, goes_on, kept, k, stack)


def check_the_episode_goes_on(latent: LatentReplay, goes_on: bool, kept: np.ndarray, k: int,
                              stack: int) -> None:
    """After conversion, add_step chains onto the newest converted entry (or needs a reset)."""
    nxt = np.full((k, 2, 3 * stack), 7.0, np.float32)
    assert latent.open == goes_on
    if not goes_on:  # terminated (or nothing converted): a new episode must begin
        with pytest.raises(RuntimeError, match="add_reset"):
            latent.add_step(np.zeros(2), 99.5, False, nxt)
        return
    before = len(latent)
    newest = latent.latents.get(kept.size - 1).astype(np.float32)
    latent.add_step(np.zeros(2), 99.5, False, nxt)
    if latent.capacity == kept.size:  # full: the step evicted the oldest entry
        return
    assert len(latent) == before + 1
    batch = latent.sample(600, np.random.default_rng(2))
    bridge = np.flatnonzero(batch.reward == 99.5)
    assert bridge.size
    for i in bridge:
        assert any(np.array_equal(batch.latent[i], newest[c]) for c in range(k))
        np.testing.assert_array_equal(batch.next_latent[i], nxt[0])


def test_the_transition_collected_at_tf_survives_conversion():
    pixel = PixelReplay(100, FRAME, 3, ACTION_DIM)
    transitions, _ = fill_pixels(pixel, [(5, False)])
    latent = convert_to_latent(pixel, mean_encoder(1), (1, 2, 9), 100)
    assert len(latent) == 5 and latent.open
    rewards = set(latent.sample(500, np.random.default_rng(0)).reward.tolist())
    assert rewards == {t.reward for t in transitions}  # the newest, 4.0, included


def test_conversion_never_holds_the_buffer_twice(monkeypatch):
    made: list[LatentReplay] = []

    class Spy(LatentReplay):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(convert_module, "LatentReplay", Spy)
    pixel = PixelReplay(160, FRAME, 3, ACTION_DIM, block_items=4)  # 40 blocks
    fill_pixels(pixel, [(49, False)] * 6 + [(1, False)])  # 302 entries: wrapped, mid-block
    before, seen = pixel.nbytes, []

    def encode(stacks: np.ndarray) -> np.ndarray:
        seen.append(pixel.nbytes + (made[0].nbytes if made else 0))
        return mean_encoder(1)(stacks)

    chunk = 8
    latent = convert_to_latent(pixel, encode, (1, 2, 9), 4000, chunk=chunk)
    entry = latent.bytes_per_entry
    block_bytes = latent.block_items * entry
    assert block_bytes <= pixel.block_items * pixel.bytes_per_entry
    slack = block_bytes + (2 * pixel.block_items + pixel.frame_stack + chunk) * entry
    assert max(seen) <= before + slack  # the documented bound
    assert max(seen) <= 1.1 * before  # i.e. never a second copy
    assert seen[-1] < before / 2  # pixel blocks were handed back along the way
    assert pixel.nbytes == 0 and latent.nbytes <= 160 * entry + block_bytes


def test_encode_must_return_the_latent_shape():
    pixel = PixelReplay(10, FRAME, 3, ACTION_DIM)
    fill_pixels(pixel, [(3, False)])
    with pytest.raises(ValueError, match="encode returned"):
        convert_to_latent(pixel, mean_encoder(2), (1, 2, 9), 10)
    with pytest.raises(RuntimeError, match="conversion failed"):
        pixel.sample(1, np.random.default_rng(0))


# ------------------------------------------------------------------------------ capacity
def test_capacity_follows_the_paper_formula():
    # section 4.2 with the paper's numbers: C=1000, P=3x100x100, N=2, K=4, L=50
    assert paper_capacity(1000, 30000, 2, 4, 50) == 18750
    assert grown_capacity(1000, 30000, 4 * 2 * 4 * 50) == 18750  # metadata excluded
    pixel, latent = PixelReplay(1, (3, 100, 100), 3, 6), LatentReplay(1, (4, 2, 50), 6)
    half = LatentReplay(1, (4, 2, 50), 6, np.float16)
    # real bytes: frame + action 24 + reward 4 + discount 4 + starts 1 + episode_first 8
    assert pixel.bytes_per_entry == 30000 + 41 == pixel_entry_bytes((3, 100, 100), 6)
    assert latent.bytes_per_entry == 1600 + 33 == latent_entry_bytes((4, 2, 50), 6)
    assert half.bytes_per_entry == 800 + 33
    assert grown_capacity(1000, 30041, 1633) == 18396  # 30_041_000 / 1633 = 18396.2
    assert grown_capacity(1000, 30041, 833) == 36063
    assert grown_capacity(1000, 30041, 1633, max_entries=5000) == 5000
    assert grown_capacity(1000, 30041, 1633, max_entries=10**6) == 18396


@given(c=st.integers(1, 10**6), p=st.integers(1, 10**5), n=st.integers(1, 4),
       k=st.integers(1, 8), dim=st.integers(1, 1024))
def test_grown_capacity_is_the_paper_formula_without_metadata(c, p, n, k, dim):
    assert paper_capacity(c, p, n, k, dim) == (c * p) // (4 * n * k * dim)
    assert grown_capacity(c, p, 4 * n * k * dim) == paper_capacity(c, p, n, k, dim)


@pytest.mark.parametrize("text, size", [
    ("0.03GB", 30_000_000), ("30 MB", 30_000_000), ("30mb", 30_000_000), ("1.5KB", 1500),
    ("1GiB", 2**30), ("512MiB", 512 * 2**20), ("2KiB", 2048), ("123", 123), ("123B", 123),
    (" 4 gb ", 4 * 10**9), (1000, 1000)])
def test_parse_memory_reads_decimal_and_binary_units(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["lots", "", "0", "0GB", "-1GB", "1XB", "1e3GB", "GB", "0.1B",
                                  None, -5, True])
def test_parse_memory_refuses_junk_naming_the_accepted_forms(text):
    with pytest.raises(ReplayError, match="0.03GB.*MiB") as info:
        parse_memory(text)
    assert "\n" not in str(info.value)


def test_memory_budget_sets_the_capacity_and_refuses_too_small_ones():
    entry = PixelReplay(1, (3, 100, 100), 3, 6).bytes_per_entry
    assert capacity_from_memory(30_000_000, entry, 128) == 30_000_000 // entry == 998
    with pytest.raises(ReplayError, match=r"at least 4\.1MB") as info:
        capacity_from_memory(1_000_000, entry, 128)
    assert "\n" not in str(info.value)
    minimum = parse_memory("4.1MB")  # the suggested budget is enough
    assert capacity_from_memory(minimum, entry, 128) >= 128
    with pytest.raises(ReplayError):
        capacity_from_memory(0, entry, 128)
    with pytest.raises(ReplayError, match="at least one entry"):
        PixelReplay(0, FRAME, 3, ACTION_DIM)
