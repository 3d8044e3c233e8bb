"""Atari groundwork (issue 4): DER preprocessing on real ale-py games, and the DER encoder.

The preprocessing tests replay the same seed and actions on a raw ``ale_py.ALEInterface`` with
DER's preprocessing written out by hand (``RawAle``) and compare frame by frame, so they check
the numbers, not only the shapes.
"""

from __future__ import annotations

from collections import deque

import ale_py
import cv2
import numpy as np
import pytest
import torch
from ale_py import roms

from lever_transfer.config import load_config
from lever_transfer.encoders import DataEfficientEncoder
from lever_transfer.envs import atari, evaluation_env, training_env
from lever_transfer.envs.atari import AtariEnv, list_games, parse_game
from lever_transfer.errors import TaskError
from lever_transfer.evaluate import EVAL_SEED, evaluate
from lever_transfer.flops import layer_table

PAPER_GAMES = ["Alien", "Amidar", "BankHeist", "CrazyClimber", "Krull", "PrivateEye", "Qbert",
               "Seaquest"]


@pytest.mark.parametrize("name", PAPER_GAMES)
def test_the_papers_games_resolve(name):
    game = parse_game(name)
    assert f"atari:{game}" in list_games() and parse_game(f"atari:{game}") == game


def test_unknown_game_is_one_line_with_close_matches():
    with pytest.raises(TaskError, match="did you mean atari:qbert") as info:
        parse_game("atari:qbret")
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_preprocessing_shapes_dtypes_and_episodic_life():
    env = AtariEnv("atari:qbert", seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    rng = np.random.default_rng(0)
    ends = []
    while len(ends) < 5:
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        assert obs.shape == (4, 84, 84) and isinstance(reward, float)
        if terminated or truncated:
            ends.append((env._lives, info["game_over"]))
            obs, _ = env.reset()
    # four lives: three life losses continue the game, the fourth is game over
    assert ends[:4] == [(3, False), (2, False), (1, False), (0, True)]
    with pytest.raises(TaskError, match="is not one of"):
        env.step(99)
    env.close()


def test_der_encoder_matches_table_3():
    encoder = DataEfficientEncoder()
    rows = layer_table(encoder, torch.zeros((1, 4, 84, 84), dtype=torch.uint8))
    convs = [r for r in rows if r.kind == "Conv2d"]
    assert [c.output_shape for c in convs] == [(32, 16, 16), (64, 3, 3)]
    assert [round(c.flops, -4) for c in convs] == [8.2e5, 4.6e5]  # table 3: 8.2e5, 4.6e5
    assert encoder.feature_dim == 576 and encoder.num_layers == 2


# -- preprocessing against the raw emulator (the paper's values written out, not imported)


def _shrink(screen: np.ndarray) -> np.ndarray:
    return cv2.resize(screen, (84, 84), interpolation=cv2.INTER_AREA)


class RawAle:
    """The reference: ale-py's emulator driven directly, DER's preprocessing written out by hand.

    Seeded as gymnasium does (ale_py/env.py ``seed_game``, ``AtariPreprocessing.reset``): one
    ``SeedSequence(seed)`` gives the numpy seed that draws the 1..30 no-ops and the emulator's
    seed; sticky actions off; the episode ends at ``max_frames`` emulator frames, counted here.
    """

    def __init__(self, game: str, seed: int, max_frames: int = 108_000):
        np_seed, ale_seed = np.random.SeedSequence(seed).generate_state(2)
        self.ale = ale_py.ALEInterface()
        self.ale.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.setInt("random_seed", int(ale_seed.astype(np.int32)))
        self.ale.loadROM(roms.get_rom_path(game))
        self.ale.reset_game()
        self.actions = self.ale.getMinimalActionSet()
        self.max_frames, self.frames = max_frames, 0
        self.pooling_mattered = self.early_rewards = 0  # how often a shortcut would differ
        self.noops = int(np.random.default_rng(int(np_seed)).integers(1, 31))
        for _ in range(self.noops):
            self.ale.act(ale_py.Action.NOOP)
            self.frames += 1
        self.stack = deque([_shrink(self.ale.getScreenGrayscale())] * 4, maxlen=4)

    def obs(self) -> np.ndarray:
        return np.stack(self.stack)  # oldest first

    def step(self, action: int) -> tuple[float, bool]:
        """Four frames of ``action``: (summed reward, game over or frame limit). The stack gains
        the max of the last two screens, unless the episode ended mid-skip."""
        rewards, screens = [], []
        for _ in range(4):
            rewards.append(self.ale.act(self.actions[action]))
            self.frames += 1
            screens.append(self.ale.getScreenGrayscale())
            if self.ale.game_over(with_truncation=False) or self.frames >= self.max_frames:
                return sum(rewards), True
        self.early_rewards += any(rewards[:-1])
        pooled = np.maximum(screens[-2], screens[-1])
        self.pooling_mattered += not np.array_equal(pooled, screens[-1])
        self.stack.append(_shrink(pooled))
        return sum(rewards), False


def _frame(env: AtariEnv) -> int:
    return env._env.unwrapped.ale.getEpisodeFrameNumber()


@pytest.mark.slow
def test_noop_starts_match_raw_ale():
    """A seeded reset plays the seed's 1..30 no-ops and stacks the resized screen four times."""
    env = AtariEnv("atari:qbert", episodic_life=False)
    noops = set()
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        ref = RawAle("qbert", seed)
        assert _frame(env) == ref.noops and np.array_equal(obs, ref.obs())
        noops.add(ref.noops)
    assert len(noops) > 1  # the count depends on the seed
    env.close()


@pytest.mark.slow
def test_agent_steps_are_4_frames_summed_and_max_pooled_like_raw_ale():
    """Each agent step is 4 emulator frames of the action with rewards summed; the new frame is
    the area-resized max of the last two grayscale screens; the stack holds the last 4, oldest
    first. DER's numbers, so a frame-by-frame match proves the preprocessing, not only shapes."""
    env = AtariEnv("atari:qbert", episodic_life=False)
    obs, _ = env.reset(seed=0)
    ref = RawAle("qbert", 0)
    assert env.action_space.n == len(ref.actions)
    rng, total = np.random.default_rng(0), 0.0
    for step in range(1, 251):
        action = int(rng.integers(env.action_space.n))
        obs, reward, terminated, truncated, _ = env.step(action)
        ref_reward, ended = ref.step(action)
        assert not (ended or terminated or truncated)
        assert _frame(env) == ref.noops + 4 * step == ref.frames
        assert reward == ref_reward and np.array_equal(obs, ref.obs()), f"step {step}"
        total += reward
    # the checks had teeth: rewards came before the last frame, the max beat the last screen
    assert total > 0 and ref.early_rewards > 0 and ref.pooling_mattered > 10
    env.close()


@pytest.mark.slow
def test_sticky_actions_are_off():
    """Two seeds with equal no-op counts but different emulator seeds replay the same actions
    identically; with sticky actions the emulator's seed would decide which actions repeat."""
    env = AtariEnv("atari:qbert", episodic_life=False)
    seed_with: dict[int, int] = {}
    for seed in range(31):  # 30 no-op counts: two of 31 seeds share one
        env.reset(seed=seed)
        if _frame(env) in seed_with:
            break
        seed_with[_frame(env)] = seed
    actions = np.random.default_rng(1).integers(env.action_space.n, size=200)
    plays = []
    for game_seed in (seed_with[_frame(env)], seed):
        env.reset(seed=game_seed)
        plays.append([env.step(int(a))[:2] for a in actions])
    for (obs_a, reward_a), (obs_b, reward_b) in zip(*plays):
        assert reward_a == reward_b and np.array_equal(obs_a, obs_b)
    assert env._env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    env.close()


@pytest.mark.slow
def test_episodes_truncate_at_108k_emulator_frames(monkeypatch):
    """The limit is 108K emulator frames counted from reset, no-ops included. Playing to it costs
    ~15-20 s here, so the emulator's setting is read and a 402-frame limit runs the same path."""
    env = AtariEnv("atari:qbert")
    assert env._env.unwrapped.ale.getInt("max_num_frames_per_episode") == 108_000
    env.close()
    monkeypatch.setattr(atari, "MAX_EPISODE_FRAMES", 402)
    env = AtariEnv("atari:qbert", episodic_life=False)
    env.reset(seed=2)
    ref = RawAle("qbert", 2, max_frames=402)
    assert (402 - ref.noops) % 4  # the limit falls inside an agent step
    rng, ended = np.random.default_rng(2), False
    while not ended:
        action = int(rng.integers(env.action_space.n))
        obs, reward, terminated, truncated, info = env.step(action)
        ref_reward, ended = ref.step(action)
        assert reward == ref_reward and truncated == ended and not terminated
    assert _frame(env) == 402 and not ref.ale.game_over(with_truncation=False)
    assert not info["game_over"]
    env.reset()  # a truncated game is over: the next reset starts a new one
    assert _frame(env) <= 30
    env.close()


@pytest.mark.slow
def test_training_ends_an_episode_per_life_and_continues_the_game():
    """Training (DER's episodic life) ends an episode at each lost life; the next unseeded reset
    continues the same game with one no-op step, so the frames never restart."""
    env = training_env(load_config("atari:qbert", {"device": "cpu", "seed": 1}))
    env.reset(seed=7)
    ref = RawAle("qbert", 7)
    rng, lives, ends = np.random.default_rng(7), ref.ale.lives(), []
    while True:
        action = int(rng.integers(env.action_space.n))
        obs, reward, terminated, truncated, info = env.step(action)
        ref_reward, ended = ref.step(action)
        assert reward == ref_reward and not truncated and _frame(env) == ref.frames
        if ended:
            assert terminated and info["game_over"]
            break
        assert np.array_equal(obs, ref.obs())
        lost, lives = 0 < ref.ale.lives() < lives, ref.ale.lives()
        assert terminated == lost and not info["game_over"]
        if terminated:
            ends.append(lives)
            obs, _ = env.reset()
            assert not ref.step(0)[1]  # the continuing no-op
            assert np.array_equal(obs, ref.obs()) and _frame(env) == ref.frames
    assert ends == [3, 2, 1] and ref.ale.game_over(with_truncation=False)
    env.close()


class _Scripted:
    """An agent that plays seeded random actions and keeps every observation it is shown."""

    def __init__(self, actions: int):
        self.rng, self.n, self.seen, self.actions = np.random.default_rng(3), actions, [], []

    def act(self, obs: np.ndarray, sample: bool) -> int:
        assert not sample
        self.seen.append(obs.copy())
        self.actions.append(int(self.rng.integers(self.n)))
        return self.actions[-1]


@pytest.mark.slow
def test_evaluation_plays_whole_games():
    """Evaluation's episode is a whole game through every life: its return is the raw
    emulator's whole-game score for the same actions, and every frame shown matches."""
    cfg = load_config("atari:qbert", {"device": "cpu", "seed": 2})
    env = evaluation_env(cfg)
    agent = _Scripted(env.action_space.n)
    result = evaluate(agent, env, 1, cfg.seed)
    env.close()
    ref = RawAle("qbert", EVAL_SEED + cfg.seed * 1000)
    total, lives = 0.0, [ref.ale.lives()]
    for step, (obs, action) in enumerate(zip(agent.seen, agent.actions), 1):
        assert np.array_equal(obs, ref.obs()), f"step {step}"
        reward, ended = ref.step(action)
        total += reward
        lives.append(ref.ale.lives())
        assert ended == (step == len(agent.actions))
    assert ref.ale.game_over(with_truncation=False) and result.returns == [total]
    assert lives[0] == 4 and len(set(lives)) >= 4  # the episode spanned every life
