"""Atari through gymnasium and ale-py, preprocessed as in data-efficient Rainbow (DER).

The same API as the DMC environments: ``reset(seed) -> obs, info`` and ``step(a) -> obs, reward,
terminated, truncated, info``, with ``obs`` a uint8 ``[4, 84, 84]`` stack of grayscale frames
(oldest first). Preprocessing follows van Hasselt et al. (2019) and the LeVER paper's Atari
setting (appendix H, table 5): frame skip 4 with a max over the last two frames, 84x84 grayscale,
up to 30 no-op starts, sticky actions off, the full game's 108K-frame limit. With
``episodic_life`` (training, as in the data-efficient Rainbow code) a lost life ends the episode
(``terminated``) but the next ``reset`` continues the same game with a no-op instead of starting
a new one; evaluation plays whole games. Rewards are left unclipped here: clipping belongs to the
training loop (``reward_clip``), which also logs the true returns.

Task names: ``atari:qbert``, ``atari:bank_heist``, or the gymnasium spelling ``Qbert`` /
``BankHeist``. ROMs ship with ale-py.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any, cast

import gymnasium as gym
import numpy as np

from ..config import atari_game
from ..errors import TaskError
from ..recipe_files import (
    ATARI_FRAME_SKIP,
    ATARI_FRAME_STACK,
    ATARI_MAX_EPISODE_FRAMES,
    ATARI_NOOP_MAX,
    ATARI_SCREEN_SIZE,
    environment_id,
)

FRAME_SKIP = ATARI_FRAME_SKIP
FRAME_STACK = ATARI_FRAME_STACK
SCREEN_SIZE = ATARI_SCREEN_SIZE
NOOP_MAX = ATARI_NOOP_MAX
MAX_EPISODE_FRAMES = ATARI_MAX_EPISODE_FRAMES


@functools.lru_cache(maxsize=1)
def _games() -> tuple[str, ...]:
    from ale_py.roms import get_all_rom_ids

    return tuple(sorted(get_all_rom_ids()))


def list_games() -> list[str]:
    """Every game ale-py ships, as task names (``atari:bank_heist``)."""
    return [f"atari:{game}" for game in _games()]


def parse_game(task: str) -> str:
    """``atari:qbert`` / ``Qbert`` / ``atari:BankHeist`` -> ``bank_heist``; one-line error else."""
    game = atari_game(task).replace("-", "_")
    if game in _games():
        return game
    close = difflib.get_close_matches(game, _games(), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(f'atari:{c}' for c in close)}? " if close else ""
    raise TaskError(f"unknown Atari game {task!r}; {hint}(ale-py ships {len(_games())} games)")


class AtariEnv(gym.Env):
    """One Atari game as stacked uint8 grayscale frames with DER's preprocessing."""

    metadata = {"render_modes": ["rgb_array"]}
    action_space: gym.spaces.Discrete  # ALE's minimal action set

    def __init__(self, task: str, episodic_life: bool = True, seed: int | None = None):
        import ale_py
        from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

        gym.register_envs(ale_py)
        self.game = parse_game(task)
        self.task = f"atari:{self.game}"
        base = gym.make(environment_id(self.task), frameskip=1,
                        repeat_action_probability=0.0, full_action_space=False,
                        max_num_frames_per_episode=MAX_EPISODE_FRAMES)
        self._env = FrameStackObservation(
            AtariPreprocessing(base, noop_max=NOOP_MAX, frame_skip=FRAME_SKIP,
                               screen_size=SCREEN_SIZE, terminal_on_life_loss=False,
                               grayscale_obs=True, scale_obs=False),
            FRAME_STACK)
        self.action_space = cast(gym.spaces.Discrete, self._env.action_space)
        if seed is not None:
            self.action_space.seed(seed)
        self.observation_space = gym.spaces.Box(0, 255, (FRAME_STACK, SCREEN_SIZE, SCREEN_SIZE),
                                                np.uint8)
        self.action_repeat = FRAME_SKIP
        self.episodic_life = episodic_life
        self._lives = 0
        self._life_lost = False  # the last episode ended on a lost life, not a game over

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        if self._life_lost and seed is None:  # same game, next life
            self._life_lost = False
            obs, _, terminated, truncated, info = self._env.step(0)
            if not (terminated or truncated):
                return np.asarray(obs, dtype=np.uint8), info
        self._life_lost = False
        obs, info = self._env.reset(seed=seed, options=options)
        self._lives = self._ale_lives()
        return np.asarray(obs, dtype=np.uint8), info

    def _ale_lives(self) -> int:
        # gymnasium's Env does not declare ale_py's `ale` attribute
        return int(self._env.unwrapped.ale.lives())  # type: ignore[attr-defined]

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise TaskError(f"action {action!r} is not one of {self.task}'s "
                            f"{self.action_space.n} actions (0..{self.action_space.n - 1})")
        obs, reward, terminated, truncated, info = self._env.step(action)
        lives = self._ale_lives()
        if self.episodic_life and 0 < lives < self._lives and not (terminated or truncated):
            terminated = self._life_lost = True
        self._lives = lives
        info["game_over"] = terminated and not self._life_lost
        return np.asarray(obs, dtype=np.uint8), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray:
        """The full-resolution RGB screen, HWC uint8 (210x160, for videos)."""
        screen = self._env.unwrapped.ale.getScreenRGB()  # type: ignore[attr-defined]  # as above
        return np.asarray(screen, dtype=np.uint8)

    def step_async(self, action: int) -> None:
        """The DMC worker's split step, run in place: ALE steps are cheap (about 0.5 ms)."""
        self._pending = action

    def step_wait(self) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return self.step(self._pending)

    def close(self) -> None:
        self._env.close()
