"""Replay: stacks rebuilt from single frames, latents, conversion, capacity and memory.

The pixel and latent replays are checked against a reference that keeps every transition with
explicitly stacked observations (a list, as naive replay code would). Every frame's pixels
spell its entry number, so a sampled stack says exactly which frames it was built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import given, settings
from hypothesis import strategies as st

import lever_transfer.replay.convert as convert_module
from lever_transfer.errors import ReplayError
from lever_transfer.replay import (
    BlockArray,
    LatentReplay,
    PixelReplay,
    PrioritizedSampler,
    capacity_from_memory,
    convert_to_latent,
    grown_capacity,
    latent_entry_bytes,
    paper_capacity,
    parse_memory,
)
from lever_transfer.replay.pixel import pixel_entry_bytes
from lever_transfer.replay.priority import SumTree

FRAME = (3, 8, 8)
ACTION_DIM = 2


def frame(entry: int) -> np.ndarray:
    """A frame whose channels spell its entry number (and a third, distinct pattern)."""
    out = np.empty(FRAME, np.uint8)
    out[0], out[1], out[2] = entry % 256, entry // 256, (entry * 37 + 11) % 256
    return out


def stack_of(entry: int, first: int, stack: int) -> np.ndarray:
    """The observation an env frame stack shows at ``entry``: the reset frame repeated."""
    return np.concatenate([frame(max(j, first)) for j in range(entry - stack + 1, entry + 1)])


@dataclass(frozen=True)
class Transition:
    entry: int  # the entry it starts at; its next observation is entry + 1
    first: int  # its episode's first entry
    action: np.ndarray
    reward: float  # unique: the transition's index
    discount: float


def play(episodes: list[tuple[int, bool]], reset: Callable, step: Callable) -> \
        tuple[list[Transition], list[int]]:
    """Feed episodes (steps, terminated at the end) as reset(entry, first) and
    step(action, reward, terminated, entry, first); return the reference transitions and
    every entry's episode start (one per entry)."""
    entry, transitions, firsts = 0, [], []
    for length, terminated in episodes:
        first = entry
        firsts += [first] * (length + 1)
        reset(entry, first)
        for t in range(length):
            done = terminated and t == length - 1
            reward = float(len(transitions))
            action = np.array([reward, -reward], np.float32)
            step(action, reward, done, entry + 1, first)
            transitions.append(Transition(entry, first, action, reward, 0.0 if done else 1.0))
            entry += 1
        entry += 1
    return transitions, firsts


def fill_pixels(replay: PixelReplay, episodes: list[tuple[int, bool]]) -> \
        tuple[list[Transition], list[int]]:
    s = replay.frame_stack
    return play(episodes, lambda e, f: replay.add_reset(stack_of(e, f, s)),
                lambda a, r, d, e, f: replay.add_step(a, r, d, stack_of(e, f, s)))


def pixel_window(transitions: list[Transition], total: int, capacity: int,
                 stack: int) -> dict[float, Transition]:
    """Transitions whose frames (obs and next obs) are all still in the ring."""
    oldest = max(0, total - capacity)
    return {t.reward: t for t in transitions if max(t.entry - stack + 1, t.first) >= oldest}


episodes_st = st.lists(st.tuples(st.integers(0, 12), st.booleans()), min_size=1, max_size=8)


# ------------------------------------------------------------------------------ pixel replay
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


# ------------------------------------------------------------------------------ latent replay
def latents_of(entry: int, k: int, n: int) -> np.ndarray:
    """[K, N, 2] latents whose values spell (entry, copy, network); exact in float16 too."""
    grid = entry * 8 + np.arange(k)[:, None] * 2 + np.arange(n)[None, :]
    return np.repeat(grid[:, :, None], 2, axis=2).astype(np.float32)


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


# ------------------------------------------------------------------------------ n-step returns
def still_open(episodes: list[tuple[int, bool]]) -> bool:
    """Whether the last episode is under way after ``play`` (it did not terminate)."""
    length, terminated = episodes[-1]
    return not (terminated and length)


def reference_n_step(transitions: list[Transition], start: Transition, n: int, gamma: float,
                     open_first: int | None) -> tuple[float, float, int] | None:
    """(return, discount on the next value, next entry) walked transition by transition, or
    None while the window is incomplete: it reaches the newest entry of the episode under way
    (first entry ``open_first``) before n steps and before a termination. The reference
    data-efficient Rainbow never samples such a transition; a window that an episode's end
    (termination, or a reset after a time limit) cuts short is complete."""
    by_entry = {t.entry: t for t in transitions}
    total, m, t = 0.0, 0, start
    while True:
        total += gamma ** m * t.reward
        m += 1
        if t.discount == 0.0:
            return total, 0.0, t.entry + 1
        t = by_entry.get(t.entry + 1)
        if m == n:
            return total, gamma ** m, start.entry + m
        if t is None or t.first != start.first:  # the episode ends at entry start + m
            return None if start.first == open_first else (total, gamma ** m, start.entry + m)


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


# ------------------------------------------------------------------------------ priorities
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
