"""The update math, checked by hand: each agent's loss on a two- or three-sample batch is
recomputed here from the formulas (SAC's soft Bellman target with the target critic and the
entropy term, the actor and temperature losses, CURL's bilinear logits, C51's projection with
double Q), and the discounts a real run samples are the ones its recipe asks for.

The hand computations use deep copies of the networks taken before the update and draw the same
random numbers in the same order (the actor's Gaussian noise from torch's global generator,
Rainbow's target noise from the agent's generator), so any change of formula, network or
input changes the reported loss. The target networks are perturbed first so that using the
online network where the target belongs cannot give the same number.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lever_transfer.agents.rainbow import RainbowAgent
from lever_transfer.agents.sac_curl import SacCurlAgent
from lever_transfer.config import load_config
from lever_transfer.replay import LatentBatch, PixelBatch

from .conftest import OBS_SHAPE

ACTION_DIM = 2
REWARD = np.array([0.5, -1.0, 2.0], np.float32)
DISCOUNT = np.array([0.99, 0.0, 0.99**3], np.float32)  # bootstrapped, terminated, 3-step


def perturb(module: torch.nn.Module, seed: int) -> None:
    """Move every parameter a little, so that this network differs from its online twin."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator))


def squashed_gaussian(actor, z: torch.Tensor, noise: torch.Tensor):
    """SAC's tanh-Gaussian sample and its log-probability, written out from the formulas."""
    cfg_min, cfg_max = actor.log_std_min, actor.log_std_max
    mu, raw = actor.trunk(z).chunk(2, dim=-1)
    log_std = cfg_min + 0.5 * (cfg_max - cfg_min) * (torch.tanh(raw) + 1)
    u = mu + noise * log_std.exp()
    gaussian = torch.distributions.Normal(mu, log_std.exp()).log_prob(u).sum(-1, keepdim=True)
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), the change of variables of tanh
    jacobian = (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1, keepdim=True)
    return torch.tanh(u), gaussian - jacobian


def sac_agent(small_config, **overrides) -> SacCurlAgent:
    agent = SacCurlAgent(small_config(**overrides), OBS_SHAPE, ACTION_DIM)
    with torch.no_grad():
        agent.log_alpha.fill_(math.log(0.3))  # an entropy term that cannot vanish in the sum
    return agent


def latents(seed: int) -> LatentBatch:
    rng = np.random.default_rng(seed)
    return LatentBatch(latent=0.5 * rng.standard_normal((3, 2, 50)).astype(np.float32),
                       next_latent=0.5 * rng.standard_normal((3, 2, 50)).astype(np.float32),
                       action=rng.uniform(-0.9, 0.9, (3, ACTION_DIM)).astype(np.float32),
                       reward=REWARD, discount=DISCOUNT)


def soft_target(ref: SacCurlAgent, z_next_critic, z_next_actor, noise) -> torch.Tensor:
    """r + discount * (min of the TARGET critic's twin Q - alpha * log pi) at a' ~ pi(.|s')."""
    next_action, next_log_pi = squashed_gaussian(ref.actor, z_next_actor, noise)
    q1, q2 = ref.target_critic(z_next_critic, next_action)
    soft_value = torch.min(q1, q2) - ref.alpha * next_log_pi
    return torch.as_tensor(REWARD)[:, None] + torch.as_tensor(DISCOUNT)[:, None] * soft_value


def critic_loss(ref: SacCurlAgent, z, action, target) -> torch.Tensor:
    q1, q2 = ref.critic(z, torch.as_tensor(action))
    return ((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean()


@torch.no_grad()
def test_sac_critic_loss_uses_the_target_critic_the_entropy_term_and_the_discount(small_config):
    agent = sac_agent(small_config)
    agent.freeze("all")  # latents in, so the heads are all there is
    perturb(agent.target_critic, seed=1)
    batch = latents(seed=0)
    ref = copy.deepcopy(agent)
    torch.manual_seed(123)
    with torch.enable_grad():
        metrics = agent.update(batch, step=1).metrics  # odd step: no actor or target update
    torch.manual_seed(123)
    noise = torch.randn(3, ACTION_DIM)  # the next action's noise, the update's first draw
    next_latent = torch.as_tensor(batch.next_latent)
    target = soft_target(ref, next_latent[:, 0], next_latent[:, 1], noise)
    expected = critic_loss(ref, torch.as_tensor(batch.latent)[:, 0], batch.action, target)
    assert metrics["critic_loss"] == pytest.approx(expected.item(), rel=1e-4)
    q1, _ = ref.critic(torch.as_tensor(batch.latent)[:, 0], torch.as_tensor(batch.action))
    assert metrics["q"] == pytest.approx(q1.mean().item(), rel=1e-5)


@torch.no_grad()
def test_sac_curl_pixel_update_uses_target_encoder_and_bilinear_logits(small_config):
    """Before Tf: the target reads the TARGET encoder's next latent and the online actor's next
    action; CURL's logits are z_anchor W z_positive^T with the positive from the target encoder.
    Crops are the identity at crop = render size, so every latent can be recomputed here."""
    agent = sac_agent(small_config, crop_size=100)
    perturb(agent.target_critic, seed=1)
    perturb(agent.target_encoder, seed=2)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (3, *OBS_SHAPE), dtype=np.uint8)
    next_obs = rng.integers(0, 256, (3, *OBS_SHAPE), dtype=np.uint8)
    action = rng.uniform(-0.9, 0.9, (3, ACTION_DIM)).astype(np.float32)
    batch = PixelBatch(obs=obs, action=action, reward=REWARD, discount=DISCOUNT,
                       next_obs=next_obs)
    ref = copy.deepcopy(agent)
    torch.manual_seed(7)
    with torch.enable_grad():
        metrics = agent.update(batch, step=1).metrics
    torch.manual_seed(7)
    noise = torch.randn(3, ACTION_DIM)
    obs_t, next_t = torch.as_tensor(obs), torch.as_tensor(next_obs)
    target = soft_target(ref, ref.target_encoder(next_t), ref.actor_encoder(next_t), noise)
    z_anchor = ref.critic_encoder(obs_t)
    expected = critic_loss(ref, z_anchor, action, target)
    assert metrics["critic_loss"] == pytest.approx(expected.item(), rel=1e-4)
    z_positive = ref.target_encoder(obs_t)
    logits = z_anchor @ ref.curl_w @ z_positive.T
    assert logits.shape == (3, 3)
    curl = F.cross_entropy(logits, torch.arange(3))  # max-subtraction changes nothing here
    assert metrics["curl_loss"] == pytest.approx(curl.item(), rel=1e-4)


@torch.no_grad()
def test_sac_actor_and_temperature_losses_match_their_formulas(small_config):
    """Actor: mean(alpha * log pi(a|s) - min Q(s, a)) with a ~ pi, Q the critic just updated.
    Temperature: d/d(log alpha) of mean(alpha * (-log pi - target entropy)), target = -|A|."""
    agent = sac_agent(small_config)
    agent.freeze("all")
    batch = latents(seed=3)
    ref = copy.deepcopy(agent)
    torch.manual_seed(11)
    with torch.enable_grad():
        # even step: the actor and temperature step too
        metrics = agent.update(batch, step=0).metrics
    torch.manual_seed(11)
    torch.randn(3, ACTION_DIM)  # first draw: the next action of the critic's target
    noise = torch.randn(3, ACTION_DIM)
    latent = torch.as_tensor(batch.latent)
    action, log_pi = squashed_gaussian(ref.actor, latent[:, 1], noise)  # actor's own latent
    q1, q2 = agent.critic(latent[:, 0], action)  # the critic after this update's critic step
    alpha = ref.alpha
    assert metrics["actor_loss"] == pytest.approx((alpha * log_pi - torch.min(q1, q2)).mean()
                                                  .item(), rel=1e-4)
    assert metrics["entropy"] == pytest.approx(-log_pi.mean().item(), rel=1e-4)
    assert agent.target_entropy == -ACTION_DIM
    gradient = (alpha * (-log_pi + ACTION_DIM)).mean()
    assert agent.log_alpha.grad.item() == pytest.approx(gradient.item(), rel=1e-4)
    # Adam's first step moves by the learning rate against the gradient's sign
    step = ref.log_alpha - agent.log_alpha
    assert step.item() == pytest.approx(math.copysign(agent.settings.alpha_lr, gradient.item()),
                                        rel=1e-3)


def test_sac_reward_one_discount_zero_drives_q_to_one(small_config):
    agent = sac_agent(small_config)
    agent.freeze("all")
    batch = latents(seed=4)
    batch = LatentBatch(batch.latent, batch.next_latent, batch.action,
                        np.ones(3, np.float32), np.zeros(3, np.float32))
    for step in range(300):
        metrics = agent.update(batch, step).metrics
    assert metrics["q"] == pytest.approx(1.0, abs=0.02)
    assert metrics["critic_loss"] < 1e-3


# ------------------------------------------------------------------------------ Rainbow
def rainbow_agent() -> RainbowAgent:
    cfg = load_config("atari:qbert", {"device": "cpu", "hidden_dim": 32})
    agent = RainbowAgent(cfg, (4, 84, 84), num_actions=3)
    agent.freeze("all")
    perturb(agent.target_head, seed=5)
    return agent


def project_by_hand(probs: np.ndarray, reward: float, discount: float, support: np.ndarray
                    ) -> np.ndarray:
    """C51: move each atom to r + discount * z, clip to the support, split its mass between
    the two neighbouring atoms in proportion to closeness (all of it when it lands on one)."""
    v_min, v_max = float(support[0]), float(support[-1])
    delta = (v_max - v_min) / (len(support) - 1)
    target = np.zeros(len(probs))
    for p, z in zip(probs.astype(float), support.astype(float)):
        b = (min(max(float(reward) + float(discount) * z, v_min), v_max) - v_min) / delta
        b = round(b) if abs(b - round(b)) < 1e-6 else b  # on an atom, up to float rounding
        low, high = math.floor(b), math.ceil(b)
        if low == high:
            target[low] += p
        else:
            target[low] += p * (high - b)
            target[high] += p * (b - low)
    return target


@torch.no_grad()
def test_rainbow_loss_is_cross_entropy_to_the_projected_double_q_target():
    agent = rainbow_agent()
    rng = np.random.default_rng(0)
    batch = LatentBatch(latent=rng.standard_normal((3, 1, 576)).astype(np.float32),
                        next_latent=rng.standard_normal((3, 1, 576)).astype(np.float32),
                        action=np.array([[0], [2], [1]], np.float32), reward=REWARD,
                        discount=DISCOUNT)
    ref = copy.deepcopy(agent)  # its generator too: the target noise is drawn the same way
    with torch.enable_grad():
        metrics = agent.update(batch, step=1).metrics
    support = ref.support.numpy()
    z, z_next = torch.as_tensor(batch.latent)[:, 0], torch.as_tensor(batch.next_latent)[:, 0]
    online_q = (ref.head(z_next).exp() * ref.support).sum(-1)
    best = online_q.argmax(1)  # double Q: the ONLINE network chooses the next action ...
    ref.target_head.reset_noise(ref.generator)
    next_probs = ref.target_head(z_next).exp()  # ... the TARGET network values it
    log_probs = ref.head(z)
    loss = 0.0
    for i in range(3):
        target = project_by_hand(next_probs[i, best[i]].numpy(), REWARD[i], DISCOUNT[i], support)
        assert target.sum() == pytest.approx(1.0, abs=1e-5)
        loss -= float((target * log_probs[i, int(batch.action[i, 0])].numpy()).sum()) / 3
    assert metrics["loss"] == pytest.approx(loss, rel=1e-4)


def test_rainbow_reward_one_discount_zero_drives_q_to_one():
    agent = rainbow_agent()
    rng = np.random.default_rng(1)
    batch = LatentBatch(latent=rng.standard_normal((3, 1, 576)).astype(np.float32),
                        next_latent=rng.standard_normal((3, 1, 576)).astype(np.float32),
                        action=np.array([[0], [2], [1]], np.float32),
                        reward=np.ones(3, np.float32), discount=np.zeros(3, np.float32))
    for step in range(400):
        metrics = agent.update(batch, step).metrics
    # the target is all mass on 1.0, split 1/2 : 1/2 between the atoms 0.8 and 1.2
    assert metrics["q"] == pytest.approx(1.0, abs=0.02)
