"""DrQ with LeVER: the random shift, the K- and M-averaged critic update checked by hand, the
encoder trained by the critic alone, freezing, stored shifted latents, checkpoint state, FLOPs.

Real networks (hidden 32, batch 3 or 8, 84x84 observations as DrQ renders them), no mocks. The
hand computations use deep copies taken before the update and replay the agent's random draws
in its order: the shifts' offsets from the agent's generator (the M observation views, then the
K next-observation views), the next actions' Gaussian noise from torch's global generator.
"""

from __future__ import annotations

import copy
import math
import types

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lever_transfer.agents.drq import DrQAgent
from lever_transfer.augment import random_shift
from lever_transfer.errors import ConfigError
from lever_transfer.registry import DrQSettings
from lever_transfer.replay import LatentBatch, PixelBatch

from .test_update_math import squashed_gaussian

OBS_SHAPE = (9, 84, 84)  # 3 stacked RGB frames rendered at 84 (DrQ: render = crop = 84)
ACTION_DIM = 6
SHARED = {"seed": 0, "encoder": "curl", "feature_dim": 50, "hidden_dim": 32, "num_filters": 32,
          "num_conv_layers": 4, "crop_size": 84, "channels_last": True, "discount": 0.99,
          "latent_augmentations": 2, "batch_size": 8}


def drq_config(seed: int = 0, **agent: object) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{**SHARED, "seed": seed}, agent=DrQSettings(**agent))


def drq_agent(seed: int = 0, action_dim: int = ACTION_DIM, **agent: object) -> DrQAgent:
    return DrQAgent(drq_config(seed, **agent), OBS_SHAPE, action_dim)


def metrics_of(result) -> dict[str, float]:
    return result.metrics if hasattr(result, "metrics") else result


def pixels(batch: int, seed: int = 0, action_dim: int = ACTION_DIM,
           reward: np.ndarray | None = None, discount: np.ndarray | None = None) -> PixelBatch:
    rng = np.random.default_rng(seed)
    return PixelBatch(
        obs=rng.integers(0, 256, (batch, *OBS_SHAPE), dtype=np.uint8),
        action=rng.uniform(-0.9, 0.9, (batch, action_dim)).astype(np.float32),
        reward=(rng.standard_normal(batch).astype(np.float32) if reward is None else reward),
        discount=np.full(batch, 0.99, np.float32) if discount is None else discount,
        next_obs=rng.integers(0, 256, (batch, *OBS_SHAPE), dtype=np.uint8))


def latents(batch: int, seed: int = 0, shape=(2, 50)) -> LatentBatch:
    rng = np.random.default_rng(seed)
    return LatentBatch(latent=rng.standard_normal((batch, *shape)).astype(np.float32),
                       next_latent=rng.standard_normal((batch, *shape)).astype(np.float32),
                       action=rng.uniform(-0.9, 0.9, (batch, ACTION_DIM)).astype(np.float32),
                       reward=rng.standard_normal(batch).astype(np.float32),
                       discount=np.full(batch, 0.99, np.float32))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(module: torch.nn.Module, old: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, old[k]) for k, v in module.state_dict().items())


def perturb(module: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator))


def shift_by_hand(x: torch.Tensor, size: int, pad: int, top: torch.Tensor, left: torch.Tensor
                  ) -> torch.Tensor:
    """Replicate-pad by ``pad`` (torch's own padding) and slice each image's ``size`` window,
    ``top``/``left`` pixels from the padded centre window's corner."""
    height, width = x.shape[-2:]
    dy, dx = (height - size) // 2, (width - size) // 2
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate").to(x.dtype)
    return torch.stack([padded[i, :, dy + t:dy + t + size, dx + s:dx + s + size]
                        for i, (t, s) in enumerate(zip(top.tolist(), left.tolist()))])


# ------------------------------------------------------------------------------ the shift
@pytest.mark.parametrize("render, size", [(9, 9), (13, 9)])
def test_random_shift_is_replicate_padding_then_a_random_crop(render, size):
    """DrQ's case (render == size: pad and crop back) and a larger render (CURL's 100 for 84),
    where the window moves around the centre crop."""
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.integers(0, 256, (16, 3, render, render), dtype=np.uint8))
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    shifted = random_shift(x, size, 2, generator)
    assert shifted.dtype == torch.uint8 and shifted.shape == (16, 3, size, size)
    replayed = torch.Generator().set_state(state)  # all tops, then all lefts, in 0..2*pad
    top = torch.randint(0, 5, (16,), generator=replayed)
    left = torch.randint(0, 5, (16,), generator=replayed)
    assert torch.equal(shifted, shift_by_hand(x, size, 2, top, left))
    assert len(set(zip(top.tolist(), left.tolist()))) > 1  # independent per image
    assert not torch.equal(random_shift(x, size, 2, generator), shifted)
    state = generator.get_state()
    centre = (render - size) // 2
    assert torch.equal(random_shift(x, size, 0, generator),  # pad 0: the centre crop
                       x[..., centre:centre + size, centre:centre + size])
    assert torch.equal(generator.get_state(), state)  # and nothing drawn


# ------------------------------------------------------------------------------ settings
def test_settings_are_the_drq_code_defaults_and_refuse_bad_values():
    s = DrQSettings()
    assert (s.critic_lr, s.actor_lr, s.alpha_lr, s.alpha_beta1) == (1e-3, 1e-3, 1e-3, 0.9)
    assert (s.init_temperature, s.critic_tau, s.encoder_tau) == (0.1, 0.01, 0.01)
    assert (s.actor_update_freq, s.critic_target_update_freq) == (2, 2)
    assert (s.actor_log_std_min, s.actor_log_std_max) == (-10.0, 2.0)
    assert (s.image_pad, s.target_augmentations, s.q_augmentations) == (4, 2, 2)
    for bad in ({"target_augmentations": 0}, {"q_augmentations": 1.5}, {"image_pad": -1},
                {"critic_tau": 0.0}, {"alpha_lr": 0.0}, {"alpha_beta1": 1.0},
                {"actor_log_std_min": 3.0}):
        with pytest.raises(ConfigError):
            DrQSettings(**bad)


# ------------------------------------------------------------------------------ the update
def test_pixel_updates_lower_a_fixed_batch_critic_loss():
    """Discount 0 makes the target the reward (no moving target, no entropy noise), so the
    updates are a regression on fresh shifts of one batch: the loss must fall, step after step."""
    torch.manual_seed(0)  # the initial weights (other seeds: a ratio of 0.64-0.74, 24-29 falls)
    agent = drq_agent()
    batch = pixels(8, seed=1, discount=np.zeros(8, np.float32))
    losses = [metrics_of(agent.update(batch, step))["critic_loss"] for step in range(30)]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3]), losses
    assert np.count_nonzero(np.diff(losses) < 0) >= 22, losses


@pytest.mark.parametrize("k, m", [(2, 2), (3, 1)])
@torch.no_grad()
def test_critic_loss_is_the_mean_over_m_views_of_the_target_averaged_over_k_views(k, m):
    """y_b = 1/K sum_k [r_b + d_b (min Q_target(f_target(shift_k(s'_b)), a'_k) - alpha log pi)],
    a'_k ~ pi(.|f_actor(shift_k(s'_b))); loss = 1/M sum_m [(Q1(f(shift_m(s_b)), a_b) - y_b)^2 +
    (Q2 - y_b)^2] averaged over b; every latent through tanh as in DrQ's encoder."""
    pad = 4
    agent = drq_agent(target_augmentations=k, q_augmentations=m, image_pad=pad)
    with torch.no_grad():
        agent.log_alpha.fill_(math.log(0.3))  # an entropy term that cannot vanish in the sum
    perturb(agent.target_critic, seed=1)
    perturb(agent.target_encoder, seed=2)
    reward = np.array([0.5, -1.0, 2.0], np.float32)
    discount = np.array([0.99, 0.0, 0.99**3], np.float32)
    batch = pixels(3, seed=0, reward=reward, discount=discount)
    ref = copy.deepcopy(agent)
    torch.manual_seed(7)
    with torch.enable_grad():
        metrics = metrics_of(agent.update(batch, step=1))  # odd step: critic only
    torch.manual_seed(7)
    noise = torch.randn(k * 3, ACTION_DIM).view(k, 3, ACTION_DIM)
    draws = ref.generator
    obs_offsets = [torch.randint(0, 2 * pad + 1, (m * 3,), generator=draws) for _ in "tl"]
    next_offsets = [torch.randint(0, 2 * pad + 1, (k * 3,), generator=draws) for _ in "tl"]
    obs, next_obs = torch.as_tensor(batch.obs), torch.as_tensor(batch.next_obs)
    obs_views = shift_by_hand(obs.repeat(m, 1, 1, 1), 84, pad, *obs_offsets).view(m, 3, *OBS_SHAPE)
    next_views = shift_by_hand(next_obs.repeat(k, 1, 1, 1), 84, pad, *next_offsets
                               ).view(k, 3, *OBS_SHAPE)
    r, d = torch.as_tensor(reward)[:, None], torch.as_tensor(discount)[:, None]
    targets = []
    for i in range(k):
        view = next_views[i]
        next_action, log_pi = squashed_gaussian(ref.actor, torch.tanh(ref.actor_encoder(view)),
                                                noise[i])
        q1, q2 = ref.target_critic(torch.tanh(ref.target_encoder(view)), next_action)
        targets.append(r + d * (torch.min(q1, q2) - ref.alpha * log_pi))
    y = torch.stack(targets).mean(0)
    assert len({round(float(t[0, 0]), 6) for t in targets}) == k  # the K views differ
    action = torch.as_tensor(batch.action)
    losses, q_means = [], []
    for j in range(m):
        q1, q2 = ref.critic(torch.tanh(ref.critic_encoder(obs_views[j])), action)
        losses.append(((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean())
        q_means.append(q1.mean())
    assert metrics["critic_loss"] == pytest.approx(torch.stack(losses).mean().item(), rel=1e-4)
    assert metrics["q"] == pytest.approx(torch.stack(q_means).mean().item(), rel=1e-4, abs=1e-6)
    if m > 1:  # the M views differ, so each one's loss counts
        assert abs(losses[0].item() - losses[1].item()) > 1e-4 * abs(losses[0].item())


@torch.no_grad()
def test_actor_and_temperature_losses_use_the_first_view_and_the_updated_q_heads():
    agent = drq_agent()
    with torch.no_grad():
        agent.log_alpha.fill_(math.log(0.3))
    batch = pixels(3, seed=5)
    ref = copy.deepcopy(agent)
    torch.manual_seed(11)
    with torch.enable_grad():
        metrics = metrics_of(agent.update(batch, step=0))  # even step: actor and temperature too
    torch.manual_seed(11)
    torch.randn(2 * 3, ACTION_DIM)  # first draw: the K next actions of the critic's target
    noise = torch.randn(3, ACTION_DIM)
    offsets = [torch.randint(0, 9, (2 * 3,), generator=ref.generator) for _ in "tl"]
    first_view = shift_by_hand(torch.as_tensor(batch.obs).repeat(2, 1, 1, 1), 84, 4, *offsets)[:3]
    action, log_pi = squashed_gaussian(ref.actor, torch.tanh(ref.actor_encoder(first_view)), noise)
    # the critic latent from before the critic step (ref's encoder), the Q heads after it
    q1, q2 = agent.critic(torch.tanh(ref.critic_encoder(first_view)), action)
    expected = (ref.alpha * log_pi - torch.min(q1, q2)).mean()
    assert metrics["actor_loss"] == pytest.approx(expected.item(), rel=1e-4)
    assert metrics["entropy"] == pytest.approx(-log_pi.mean().item(), rel=1e-4)
    gradient = (ref.alpha * (-log_pi + ACTION_DIM)).mean()  # target entropy -|A|
    assert agent.log_alpha.grad.item() == pytest.approx(gradient.item(), rel=1e-4)


def test_the_actor_loss_trains_the_actor_fc_but_never_reaches_the_convs():
    """Two copies take the same critic step (same draws); only one also takes the actor step.
    Their convs must hold the same weights and the same gradients (the critic's), while the
    actor's own fc + LayerNorm and trunk moved."""
    agent = drq_agent()
    agent.update(pixels(8, seed=0), 0)  # past Adam's first step everywhere
    critic_only, with_actor = copy.deepcopy(agent), copy.deepcopy(agent)
    actor_fc, trunk = snapshot(agent.actor_encoder.layers[-1]), snapshot(agent.actor.trunk)
    batch = pixels(8, seed=1)
    torch.manual_seed(3)
    assert "actor_loss" not in metrics_of(critic_only.update(batch, 1))
    torch.manual_seed(3)
    assert "actor_loss" in metrics_of(with_actor.update(batch, 2))
    for a, b in zip(critic_only.critic_encoder.layers[:4], with_actor.critic_encoder.layers[:4]):
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert pa.grad is not None and torch.equal(pa.grad, pb.grad)
            assert torch.equal(pa, pb)
    for i in range(4):  # the actor's convs are the critic's
        assert with_actor.actor_encoder.layers[i] is with_actor.critic_encoder.layers[i]
    assert not same(with_actor.actor_encoder.layers[-1], actor_fc)
    assert not same(with_actor.actor.trunk, trunk)
    assert same(critic_only.actor_encoder.layers[-1], actor_fc)


# ------------------------------------------------------------------------------ LeVER
@pytest.mark.parametrize("n", [2, 4, 5])
def test_frozen_layers_stay_bit_identical_and_leave_the_optimizers(n):
    agent = drq_agent()
    agent.update(pixels(8), 0)
    agent.freeze(n)
    frozen = [agent.critic_encoder.layers[i] for i in range(n)]
    before = [snapshot(layer) for layer in frozen]
    for i in range(n):  # target copies hard-copied, so online and target agree
        assert same(agent.target_encoder.layers[i], before[i])
    if n == agent.num_layers:
        assert same(agent.target_critic, snapshot(agent.critic))
    trainable = snapshot(agent.critic_encoder.layers[n]) if n < 5 else None
    for step in range(1, 5):
        agent.update(pixels(8, seed=step), step)
    for layer, old in zip(frozen, before):
        assert same(layer, old)
        assert all(p.grad is None and not p.requires_grad for p in layer.parameters())
    if trainable is not None:
        assert not same(agent.critic_encoder.layers[n], trainable)
    frozen_ids = {id(p) for layer in frozen for p in layer.parameters()}
    for opt in agent.optimizers.values():
        assert not frozen_ids & {id(p) for g in opt.param_groups for p in g["params"]}
        assert not frozen_ids & {id(p) for p in opt.state}


def test_after_freezing_all_a_latent_update_touches_no_encoder_and_trains_the_heads():
    agent = drq_agent()
    for step in range(2):
        agent.update(pixels(8, seed=step), step)
    agent.freeze("all")
    encoders = (agent.critic_encoder, agent.actor_encoder, agent.target_encoder)
    before = [snapshot(e) for e in encoders]
    heads = [snapshot(m) for m in (agent.critic, agent.actor, agent.target_critic)]
    alpha = agent.log_alpha.item()
    calls, reported = [], set()
    hooks = [m.register_forward_hook(lambda *a: calls.append(1))
             for e in encoders for m in e.modules()]
    try:
        for step in range(4):
            reported |= set(metrics_of(agent.update(latents(8, seed=step), step)))
    finally:
        for h in hooks:
            h.remove()
    assert calls == []
    assert reported == {"critic_loss", "q", "actor_loss", "alpha", "entropy"}
    for e, old in zip(encoders, before):
        assert same(e, old)
        assert all(p.grad is None for p in e.parameters())
    for m, old in zip((agent.critic, agent.actor, agent.target_critic), heads):
        assert not same(m, old)
    assert agent.log_alpha.item() != alpha


@torch.no_grad()
def test_a_latent_update_uses_the_stored_copy_as_its_one_view_and_tied_target_latents():
    """After Tf the target critic reads the stored online latent of the next observation, and
    the one stored copy per transition replaces the K and M shifts."""
    agent = drq_agent()
    agent.freeze("all")
    perturb(agent.target_critic, seed=4)
    batch = latents(3, seed=2)
    ref = copy.deepcopy(agent)
    torch.manual_seed(5)
    with torch.enable_grad():
        metrics = metrics_of(agent.update(batch, 1))
    torch.manual_seed(5)
    noise = torch.randn(3, ACTION_DIM)
    z, z_next = torch.as_tensor(batch.latent).tanh(), torch.as_tensor(batch.next_latent).tanh()
    next_action, log_pi = squashed_gaussian(ref.actor, z_next[:, 1], noise)
    q1, q2 = ref.target_critic(z_next[:, 0], next_action)
    y = (torch.as_tensor(batch.reward)[:, None] + torch.as_tensor(batch.discount)[:, None]
         * (torch.min(q1, q2) - ref.alpha * log_pi))
    q1, q2 = ref.critic(z[:, 0], torch.as_tensor(batch.action))
    expected = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
    assert metrics["critic_loss"] == pytest.approx(expected.item(), rel=1e-4)


def test_encode_latents_stores_k_shifted_views_and_pad_zero_makes_them_equal():
    agent = drq_agent()
    agent.freeze("all")
    stacks = pixels(3, seed=4).obs
    state = agent.generator.get_state()
    stored = agent.encode_latents(stacks, augmentations=4)
    assert stored.shape == (3, 4, 2, 50) and stored.dtype == np.float32
    for i in range(3):
        assert len({stored[i, c, 0].tobytes() for c in range(4)}) > 1  # different shifts
    replayed = torch.Generator().set_state(state)
    offsets = [torch.randint(0, 9, (4 * 3,), generator=replayed) for _ in "tl"]
    views = shift_by_hand(torch.as_tensor(stacks).repeat(4, 1, 1, 1), 84, 4, *offsets)
    with torch.no_grad():  # copy c of stack b is both networks' latent of one shifted view
        expected = torch.stack([agent.critic_encoder(views), agent.actor_encoder(views)], 1)
    expected = expected.view(4, 3, 2, 50).transpose(0, 1)
    torch.testing.assert_close(torch.from_numpy(stored), expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(stored[:, :, 0], stored[:, :, 1])  # two networks' latents

    unshifted = drq_agent(image_pad=0)
    unshifted.freeze("all")
    equal = unshifted.encode_latents(stacks, augmentations=3)
    for c in range(3):  # equal views; oneDNN's convs may round rows of one batch differently
        np.testing.assert_allclose(equal[:, 0], equal[:, c], rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        plain = unshifted.critic_encoder(torch.as_tensor(stacks))
    torch.testing.assert_close(torch.from_numpy(equal[:, 0, 0]), plain, rtol=1e-5, atol=1e-5)

    partial = drq_agent()
    partial.freeze(2)
    assert partial.latent_spec(2) == (1, (32, 39, 39))
    assert agent.latent_spec(5) == (2, (50,))
    assert partial.encode_latents(stacks, augmentations=2).shape == (3, 2, 1, 32, 39, 39)


def test_acting_reads_the_unshifted_observation_and_draws_no_shift():
    agent = drq_agent()
    obs = pixels(1, seed=6).obs[0]
    state = agent.generator.get_state()
    action = agent.act(obs, sample=False)
    assert torch.equal(agent.generator.get_state(), state)
    with torch.no_grad():
        z = torch.tanh(agent.actor_encoder(torch.as_tensor(obs)[None]))
        mu = torch.tanh(agent.actor.trunk(z).chunk(2, dim=-1)[0])
    np.testing.assert_allclose(action, mu[0].numpy(), rtol=1e-5, atol=1e-6)
    assert agent.act(obs, sample=True).shape == (ACTION_DIM,)


def test_a_larger_render_is_shifted_around_its_centre_crop():
    """On CURL's observations (rendered at 100 for an 84 encoder) DrQ shifts the 84 window
    around the centre and acts on the centre crop, so it reads the same packages as CURL."""
    agent = DrQAgent(drq_config(), (9, 100, 100), ACTION_DIM)
    assert agent.encoder.obs_shape == (9, 84, 84)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (4, 9, 100, 100), dtype=np.uint8)
    batch = PixelBatch(obs=obs, action=np.zeros((4, ACTION_DIM), np.float32),
                       reward=np.ones(4, np.float32), discount=np.zeros(4, np.float32),
                       next_obs=obs.copy())
    assert np.isfinite(metrics_of(agent.update(batch, step=0))["critic_loss"])
    with torch.no_grad():
        z = torch.tanh(agent.actor_encoder(torch.as_tensor(obs[:1, :, 8:92, 8:92])))
        mu = torch.tanh(agent.actor.trunk(z).chunk(2, dim=-1)[0])
    np.testing.assert_allclose(agent.act(obs[0], sample=False), mu[0].numpy(), rtol=1e-5,
                               atol=1e-6)
    agent.freeze("all")
    assert agent.encode_latents(obs[:2], 3).shape == (2, 3, 2, 50)


# ------------------------------------------------------------------------------ state, FLOPs
@pytest.mark.parametrize("freeze", [None, "all"])
def test_state_round_trip_gives_identical_updates(freeze):
    a = drq_agent()
    for step in range(3):
        a.update(pixels(8, seed=step), step)
    if freeze:
        a.freeze(freeze)
    state = a.export_state()
    b = drq_agent(seed=7)
    b.import_state(state)
    batch = latents(8, seed=9) if freeze else pixels(8, seed=9)
    results = []
    for agent in (a, b):
        torch.manual_seed(0)
        results.append([metrics_of(agent.update(batch, step)) for step in (4, 5)])
    assert results[0] == results[1]
    assert "actor_loss" in results[0][0]


def test_layer_flops_are_named_as_sac_curls_and_count_the_paper_layers():
    agent = drq_agent()
    rows = agent.layer_flops()
    assert [r.name for r in rows] == (
        [f"encoder:conv{i}" for i in range(1, 5)] + [f"critic:fc{i}" for i in range(1, 5)]
        + [f"actor:fc{i}" for i in range(1, 5)])
    flops = {r.name: r.flops for r in rows}
    assert flops["encoder:conv1"] == 3 * 3 * 9 * 32 * 41 * 41  # 4.36e6, the paper's table 2
    assert flops["encoder:conv4"] == 3 * 3 * 32 * 32 * 35 * 35
    assert flops["critic:fc1"] == flops["actor:fc1"] == (32 * 35 * 35 + 1) * 50  # 1.96e6
    assert flops["critic:fc2"] == (50 + ACTION_DIM + 1) * 32
    assert flops["actor:fc4"] == (32 + 1) * 2 * ACTION_DIM
