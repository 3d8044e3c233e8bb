"""The gymnasium wrapper that puts zoo encoders in other projects (frames -> stacked uint8 ->
latent), run for real on the shipped zoo. The SB3 features extractor's tests are in
tests/test_sb3.py."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lever_transfer.errors import LeverError
from lever_transfer.gym_wrapper import ZooLatentObservation, resize_frames, to_grayscale
from lever_transfer.zoo.encoder import ZooEncoder

WALKER = "hub:walker_stand-60k"  # 3 stacked RGB frames, render 100, crop 84, latent (50,)
QBERT = "hub:qbert-100k"  # 4 stacked grayscale frames, 84x84


pytestmark = pytest.mark.usefixtures("offline_hub")  # conftest: the shipped zoo only


class FrameEnv(gymnasium.Env):
    """A DMC-like environment: its observation is an HxWx3 uint8 frame, a different seeded
    random image at every step, so a test can rebuild any stack from ``frames``."""

    def __init__(self, size: int = 100, channels: int | None = 3):
        shape = (size, size) if channels is None else (size, size, channels)
        self.observation_space = gymnasium.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gymnasium.spaces.Box(-1, 1, (1,), np.float32)
        self.frames: list[np.ndarray] = []

    def _frame(self) -> np.ndarray:
        frame = self.np_random.integers(0, 256, self.observation_space.shape, dtype=np.uint8)
        self.frames.append(frame)
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.frames = []
        return self._frame(), {}

    def step(self, action):
        return self._frame(), 0.0, False, False, {}


def chw(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame).permute(2, 0, 1)


def latent_of(encoder: ZooEncoder, frames: list[np.ndarray]) -> np.ndarray:
    """The encoder applied by hand to 100x100 HxWx3 frames stacked oldest first."""
    with torch.no_grad():
        return encoder(torch.cat([chw(f) for f in frames])[None])[0].numpy()


@pytest.mark.slow
def test_cartpole_frames_come_from_render_and_reset_repeats_the_first(walker):
    pytest.importorskip("pygame", reason="classic control renders with gymnasium[classic-control]")
    env = ZooLatentObservation(gymnasium.make("CartPole-v1", render_mode="rgb_array"), walker)
    assert env.observation_space == gymnasium.spaces.Box(-np.inf, np.inf, (50,), np.float32)
    assert env.frames_from_render and not env.encoder.training

    latent, _ = env.reset(seed=0)
    first = torch.from_numpy(env.render()).permute(2, 0, 1)[None].float()  # [1, 3, 400, 600]
    by_hand = F.interpolate(first, size=(100, 100), mode="area").round().to(torch.uint8)[0]
    with torch.no_grad():
        expected = walker(by_hand.repeat(3, 1, 1)[None])[0].numpy()
    assert latent.dtype == np.float32 and latent.shape == (50,)
    assert env.observation_space.contains(latent)
    np.testing.assert_array_equal(latent, expected)

    for _ in range(3):
        latent, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert latent.dtype == np.float32 and env.observation_space.contains(latent)
    assert not np.allclose(latent, expected)  # the pole moved: the stack holds new frames


def test_frame_observations_are_stacked_oldest_first(walker):
    env = ZooLatentObservation(FrameEnv(), walker)
    assert not env.frames_from_render
    latent, _ = env.reset(seed=0)
    f = env.unwrapped.frames
    np.testing.assert_array_equal(latent, latent_of(walker, [f[0]] * 3))
    env.step(env.action_space.sample())
    latent, *_ = env.step(env.action_space.sample())
    np.testing.assert_array_equal(latent, latent_of(walker, f[0:3]))
    latent, *_ = env.step(env.action_space.sample())
    np.testing.assert_array_equal(latent, latent_of(walker, f[1:4]))

    latent, _ = env.reset(seed=1)  # a new episode forgets the old frames
    np.testing.assert_array_equal(latent, latent_of(walker, [env.unwrapped.frames[0]] * 3))


def test_frames_of_another_size_are_resized_and_a_layer_can_be_chosen(walker):
    env = ZooLatentObservation(FrameEnv(size=64), walker, layer=4)
    assert env.observation_space.shape == (32, 35, 35)
    latent, _ = env.reset(seed=0)
    frame = resize_frames(chw(env.unwrapped.frames[0]), 100)
    assert frame.shape == (3, 100, 100) and frame.dtype == torch.uint8
    with torch.no_grad():
        expected = walker(frame.repeat(3, 1, 1)[None], 4)[0].numpy()
    np.testing.assert_array_equal(latent, expected)
    assert latent.shape == (32, 35, 35) and env.observation_space.contains(latent)


def test_a_grayscale_encoder_gets_luma_frames(offline_hub):
    env = ZooLatentObservation(FrameEnv(size=84), QBERT)  # 4 stacked 84x84 grayscale frames
    latent, _ = env.reset(seed=0)
    frame = chw(env.unwrapped.frames[0])
    luma = to_grayscale(frame)
    by_hand = np.rint(env.unwrapped.frames[0].astype(np.float64) @ [0.299, 0.587, 0.114])
    assert luma.shape == (1, 84, 84)
    assert np.abs(luma[0].numpy() - by_hand).max() <= 1  # float32 vs float64 at .5 boundaries
    with torch.no_grad():
        expected = env.encoder(luma.repeat(4, 1, 1)[None])[0].numpy()
    np.testing.assert_array_equal(latent, expected)
    assert env.observation_space.shape == latent.shape


def test_an_env_without_frames_is_refused_with_the_fix(walker):
    with pytest.raises(LeverError, match='render_mode="rgb_array"') as error:
        ZooLatentObservation(gymnasium.make("CartPole-v1"), walker)
    assert "\n" not in str(error.value) and "CartPole-v1" in str(error.value)
    with pytest.raises(LeverError, match="layer must be 1..5"):
        ZooLatentObservation(FrameEnv(), walker, layer=6)
