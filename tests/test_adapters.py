"""The adapters that put zoo encoders in other projects, run for real on the shipped zoo: the
gymnasium wrapper (frames -> stacked uint8 -> latent) and the SB3 features extractor (trains
PPO and SAC heads while the encoder's weights stay bit for bit the same)."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lever_transfer.errors import LeverError
from lever_transfer.gym_wrapper import ZooLatentObservation, resize_frames, to_grayscale
from lever_transfer.zoo.encoder import ZooEncoder, load_encoder

WALKER = "hub:walker_stand-60k"  # 3 stacked RGB frames, render 100, crop 84, latent (50,)
QBERT = "hub:qbert-100k"  # 4 stacked grayscale frames, 84x84


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """Resolve hub: names from the repository's zoo only, whatever the user's hub holds."""
    monkeypatch.setenv("LEVER_HUB", str(tmp_path / "hub"))
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # pygame renders without a display


@pytest.fixture
def walker(offline_hub) -> ZooEncoder:
    return load_encoder(WALKER, freeze_layers="all", device="cpu")


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


# ---------------------------------------------------------------------------------------- SB3
try:  # the [sb3] extra; without it only the tests above run
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from lever_transfer.sb3 import ZooFeaturesExtractor
except ImportError:
    ZooFeaturesExtractor = None
needs_sb3 = pytest.mark.skipif(ZooFeaturesExtractor is None,
                               reason="needs pip install lever-transfer[sb3]")

POLICY_KWARGS = dict(features_extractor_class=ZooFeaturesExtractor,
                     features_extractor_kwargs=dict(encoder=WALKER), net_arch=[16])


def pixel_env(task: str):
    """``task`` as SB3 wants pixels: its render as the observation, 100x100 HxWx3 uint8."""
    pytest.importorskip("pygame", reason="classic control renders with gymnasium[classic-control]")
    def make() -> gymnasium.Env:
        env = gymnasium.make(task, render_mode="rgb_array")
        env = gymnasium.wrappers.AddRenderObservation(env, render_only=True)
        return gymnasium.wrappers.ResizeObservation(env, (100, 100))
    return VecFrameStack(make_vec_env(make, n_envs=1, seed=0), 3)


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same(before: dict[str, torch.Tensor], module: torch.nn.Module) -> None:
    after = module.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key


@needs_sb3
@pytest.mark.slow
def test_ppo_trains_its_heads_and_leaves_the_encoder_bit_for_bit(offline_hub):
    from stable_baselines3 import PPO

    model = PPO("CnnPolicy", pixel_env("CartPole-v1"), n_steps=64, batch_size=32, n_epochs=2,
                policy_kwargs=POLICY_KWARGS, seed=0, device="cpu")
    extractor = model.policy.features_extractor
    assert isinstance(extractor, ZooFeaturesExtractor) and extractor.features_dim == 50
    assert not any(p.requires_grad for p in extractor.parameters())
    encoder, heads = weights(extractor), weights(model.policy.action_net)
    value = weights(model.policy.value_net)

    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    assert_same(encoder, extractor)
    assert not extractor.zoo.training  # SB3's .train() did not wake the frozen encoder
    changed = [not torch.equal(v, model.policy.action_net.state_dict()[k])
               for k, v in heads.items()]
    changed += [not torch.equal(v, model.policy.value_net.state_dict()[k])
                for k, v in value.items()]
    assert all(changed)


@needs_sb3
@pytest.mark.slow
def test_sac_trains_on_pixels_with_frozen_actor_and_critic_encoders(offline_hub):
    from stable_baselines3 import SAC

    model = SAC("CnnPolicy", pixel_env("Pendulum-v1"), buffer_size=200, learning_starts=50,
                batch_size=16, policy_kwargs=POLICY_KWARGS, seed=0, device="cpu")
    actor, critic = model.actor.features_extractor, model.critic.features_extractor
    assert actor is not critic and actor.zoo is not critic.zoo
    encoders = {"actor": weights(actor), "critic": weights(critic)}
    mu, q = weights(model.actor.mu), weights(model.critic.q_networks[0])

    model.learn(total_timesteps=100)
    assert_same(encoders["actor"], actor)
    assert_same(encoders["critic"], critic)
    assert not torch.equal(mu["weight"], model.actor.mu.weight)
    assert not torch.equal(q["0.weight"], model.critic.q_networks[0][0].weight)
    # SB3's polyak update (x * (1 - tau) + tau * x) moves the target's copy by float rounding only
    target = model.critic_target.features_extractor.state_dict()
    for key, value in encoders["critic"].items():
        torch.testing.assert_close(target[key], value, rtol=0, atol=1e-5)


@needs_sb3
def test_extractor_gives_back_the_exact_uint8_frames(walker):
    space = gymnasium.spaces.Box(0, 255, (9, 100, 100), np.uint8)
    extractor = ZooFeaturesExtractor(space, walker)
    assert extractor.zoo is not walker  # a copy: SAC builds several extractors from one kwargs
    frames = torch.randint(0, 256, (2, 9, 100, 100), dtype=torch.uint8)
    with torch.no_grad():
        features = extractor(frames.float() / 255)
        raw = ZooFeaturesExtractor(space, walker, normalized_images=False)(frames.float())
        expected = walker(frames)
    assert features.dtype == torch.float32 and features.shape == (2, 50)
    torch.testing.assert_close(features, expected, rtol=0, atol=0)
    torch.testing.assert_close(raw, expected, rtol=0, atol=0)

    extractor.train()
    assert not extractor.zoo.training and extractor.training
    cropped = ZooFeaturesExtractor(gymnasium.spaces.Box(0, 255, (9, 84, 84), np.uint8), walker,
                                   layer=1)
    assert cropped.features_dim == 32 * 41 * 41


@needs_sb3
@pytest.mark.parametrize("shape, fix", [
    ((3, 100, 100), r"stack 3 frames with VecFrameStack\(env, 3\)"),
    ((9, 64, 64), r"resize to 100x100"),
    ((9, 100, 120), r"resize to 100x100"),
])
def test_an_observation_space_the_encoder_cannot_read_is_refused_with_the_fix(walker, shape,
                                                                             fix):
    space = gymnasium.spaces.Box(0, 255, shape, np.uint8)
    with pytest.raises(LeverError, match=fix) as error:
        ZooFeaturesExtractor(space, walker)
    assert "\n" not in str(error.value)
    assert "(9, 100, 100)" in str(error.value)  # what it wants, next to what it got


@needs_sb3
def test_a_float_space_is_refused_unless_images_are_not_normalised(walker):
    space = gymnasium.spaces.Box(0.0, 1.0, (9, 100, 100), np.float32)
    with pytest.raises(LeverError, match="normalized_images=False"):
        ZooFeaturesExtractor(space, walker)
    assert ZooFeaturesExtractor(space, walker, normalized_images=False).features_dim == 50
