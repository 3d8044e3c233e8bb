"""The reference the replay tests check against: every transition kept with explicitly stacked
observations (a list, as naive replay code would), and n-step returns walked transition by
transition. Every frame's pixels spell its entry number, so a sampled stack says exactly which
frames it was built from; latents spell (entry, copy, network) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from hypothesis import strategies as st

from lever_transfer.replay import PixelReplay

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


def latents_of(entry: int, k: int, n: int) -> np.ndarray:
    """[K, N, 2] latents whose values spell (entry, copy, network); exact in float16 too."""
    grid = entry * 8 + np.arange(k)[:, None] * 2 + np.arange(n)[None, :]
    return np.repeat(grid[:, :, None], 2, axis=2).astype(np.float32)


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
