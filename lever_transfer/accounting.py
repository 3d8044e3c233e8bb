"""``lever-transfer flops``: the paper's per-layer table and measured FLOPs per update.

Per-layer counts come from the agent's real modules (``layer_flops`` of the SAC+CURL or Rainbow
agent: tables 2 and 3); per-update counts from hooks on real updates of a real agent on
synthetic batches of the task's shapes, before freezing (pixels, encoder trained) and after
(latents, heads only), so the figures are what ``train`` adds to its cumulative FLOPs column.
"""

from __future__ import annotations

from typing import Iterator

import gymnasium as gym
import numpy as np

from .agents import Agent, agent_for_task
from .config import Config
from .flops import FlopCounter, format_table
from .registry import agent_entry
from .replay import LatentBatch, PixelBatch


def _box_shape(space: gym.Space) -> tuple[int, ...]:
    """A continuous action space's shape (a ``Box`` always has one)."""
    assert space.shape is not None
    return space.shape


def _actions(cfg: Config, space: gym.Space, rng: np.random.Generator) -> np.ndarray:
    """A batch of replay actions: uniform in the box, or indices of discrete actions."""
    b = cfg.batch_size
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, (b, 1)).astype(np.float32)
    return rng.uniform(-1, 1, (b, *_box_shape(space))).astype(np.float32)


def pixel_batch(cfg: Config, obs_shape: tuple[int, ...], space: gym.Space,
                rng: np.random.Generator) -> PixelBatch:
    """A synthetic batch of random stacks, as the replay returns it before Tf."""
    b = cfg.batch_size
    obs = rng.integers(0, 256, (b, *obs_shape), dtype=np.uint8)
    return PixelBatch(obs=obs, action=_actions(cfg, space, rng), reward=np.zeros(b, np.float32),
                      discount=np.full(b, cfg.discount, np.float32), next_obs=obs.copy())


def latent_batch(cfg: Config, latent_shape: tuple[int, ...], space: gym.Space,
                 rng: np.random.Generator) -> LatentBatch:
    """A synthetic batch of random latents, as the replay returns it after Tf."""
    b = cfg.batch_size
    latent = rng.standard_normal((b, *latent_shape)).astype(np.float32)
    return LatentBatch(latent=latent, next_latent=latent.copy(),
                       action=_actions(cfg, space, rng), reward=np.zeros(b, np.float32),
                       discount=np.full(b, cfg.discount, np.float32))


def update_flops(agent: Agent, batch: PixelBatch | LatentBatch) -> float:
    """Mean FLOPs of one update over an actor cycle (SAC's actor steps every 2nd update)."""
    # hard and soft target updates copy weights (no FLOPs): only SAC's actor step has a period
    period = agent.update_period
    with FlopCounter() as counter:
        for step in range(period):
            agent.update(batch, step)
    return counter.total / period


def flops_report(cfg: Config, measure_updates: bool = True) -> Iterator[str]:
    agent, obs_shape, space = agent_for_task(cfg)
    actions = (f"{space.n} actions" if isinstance(space, gym.spaces.Discrete) else
               f"action dim {_box_shape(space)[0]}")
    yield (f"{cfg.task}: forward FLOPs per sample ({cfg.encoder} encoder on "
           f"{cfg.crop_size}x{cfg.crop_size}x{obs_shape[0]}, {actions}; "
           f"multiply-adds, appendix B)")
    yield from format_table(agent.layer_flops())
    if not measure_updates:
        return
    rng = np.random.default_rng(0)
    before = update_flops(agent, pixel_batch(cfg, obs_shape, space, rng))
    n = agent.freeze(cfg.freeze_layers)
    networks, feature = agent.latent_spec(n)
    after_batch = (latent_batch(cfg, (networks, *feature), space, rng)
                   if agent.fully_frozen else pixel_batch(cfg, obs_shape, space, rng))
    after = update_flops(agent, after_batch)
    with FlopCounter() as store:
        agent.encode_latents(rng.integers(0, 256, (1, *obs_shape), dtype=np.uint8),
                             cfg.latent_augmentations)
    yield ""
    yield f"per update, batch {cfg.batch_size}, measured (forward + 2x backward):"
    yield f"  before Tf (pixels, encoder, {agent.entry().label}): " \
          f"{before:.3e}"
    what = "latents, heads only" if agent.fully_frozen else f"pixels, {n} layers frozen"
    yield f"  after Tf  ({what}): {after:.3e}   ({before / after:.1f}x fewer)"
    yield (f"  per stored observation after Tf (K={cfg.latent_augmentations} views x "
           f"N={networks} latents, the EKN term): {store.total:.3e}")
    yield from whole_run(cfg, before, after, store.total if agent.fully_frozen else 0)


def whole_run(cfg: Config, before: float, after: float, per_observation: float
              ) -> Iterator[str]:
    """Appendix B's totals for the recipe's whole run, from the measured per-update FLOPs:
    updates from ``init_steps`` on (one per agent step times ``updates_per_step``), the one-time
    conversion of min(Tf, C) stored observations and the per-step encoding after Tf."""
    total, start = cfg.agent_steps(cfg.steps), cfg.agent_steps(cfg.init_steps)
    tf = cfg.agent_steps(cfg.freeze_at)
    capacity = cfg.replay_capacity or total  # a memory budget's C depends on entry bytes
    updates = cfg.updates_per_step
    baseline = max(0, total - start) * updates * before
    lever = (max(0, tf - start) * updates * before + (total - tf) * updates * after
             + (min(tf, capacity) + (total - tf)) * per_observation)
    agent = agent_entry(cfg.algorithm).baseline
    yield ""
    yield (f"whole run ({total} agent steps, updates from step {start}, Tf = {tf}; "
           f"acting not counted, as in the paper):")
    yield (f"  {agent}: {baseline:.3e}   {agent}+LeVER: {lever:.3e}   "
           f"({baseline / lever:.2f}x fewer)")
