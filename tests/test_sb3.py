"""The SB3 features extractor that puts zoo encoders in Stable-Baselines3 projects, run for real
on the shipped zoo: it trains PPO and SAC heads while the encoder's weights stay bit for bit the
same. The gymnasium wrapper's tests are in tests/test_gym_wrapper.py."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

from lever_transfer.errors import LeverError

WALKER = "hub:walker_stand-60k"  # 3 stacked RGB frames, render 100, crop 84, latent (50,)


pytestmark = pytest.mark.usefixtures("offline_hub")  # conftest: the shipped zoo only


try:  # the [sb3] extra; without it these tests are skipped
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
