"""Atari groundwork (issue 4): DER preprocessing on real ale-py games, and the DER encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lever_transfer.encoders import DataEfficientEncoder
from lever_transfer.envs.atari import AtariEnv, list_games, parse_game
from lever_transfer.errors import TaskError
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
