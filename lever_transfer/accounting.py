"""``lever-transfer flops``: the paper's per-layer table and measured FLOPs per update.

Per-layer counts come from the agent's real modules (``SacCurlAgent.layer_flops``); per-update
counts from hooks on real updates of a real agent on synthetic batches of the task's shapes,
before freezing (pixels, encoder trained, CURL on) and after (latents, heads only), so the
figures are what ``train`` adds to its cumulative FLOPs column.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .agents.sac_curl import SacCurlAgent
from .config import Config
from .envs import make_env
from .flops import FlopCounter, format_table
from .replay import LatentBatch, PixelBatch


def _pixel_batch(cfg: Config, obs_shape: tuple[int, ...], action_dim: int,
                 rng: np.random.Generator) -> PixelBatch:
    b = cfg.batch_size
    obs = rng.integers(0, 256, (b, *obs_shape), dtype=np.uint8)
    return PixelBatch(obs=obs, action=rng.uniform(-1, 1, (b, action_dim)).astype(np.float32),
                      reward=np.zeros(b, np.float32), discount=np.ones(b, np.float32),
                      next_obs=obs.copy())


def _latent_batch(cfg: Config, latent_shape: tuple[int, ...], action_dim: int,
                  rng: np.random.Generator) -> LatentBatch:
    b = cfg.batch_size
    latent = rng.standard_normal((b, *latent_shape)).astype(np.float32)
    return LatentBatch(latent=latent, next_latent=latent.copy(),
                       action=rng.uniform(-1, 1, (b, action_dim)).astype(np.float32),
                       reward=np.zeros(b, np.float32), discount=np.ones(b, np.float32))


def update_flops(agent: SacCurlAgent, batch: PixelBatch | LatentBatch) -> float:
    """Mean FLOPs of one update over an actor/target cycle (actor steps every 2nd update)."""
    period = max(agent.cfg.actor_update_freq, agent.cfg.critic_target_update_freq)
    with FlopCounter() as counter:
        for step in range(period):
            agent.update(batch, step)
    return counter.total / period


def flops_report(cfg: Config, measure_updates: bool = True) -> Iterator[str]:
    env = make_env(cfg.task, action_repeat=cfg.action_repeat, frame_stack=cfg.frame_stack,
                   render_size=cfg.render_size)
    obs_shape = tuple(env.observation_space.shape)
    action_dim = int(env.action_space.shape[0])
    env.close()
    agent = SacCurlAgent(cfg, obs_shape, action_dim)
    yield (f"{cfg.task}: forward FLOPs per sample ({cfg.encoder} encoder on "
           f"{cfg.crop_size}x{cfg.crop_size}x{obs_shape[0]}, action dim {action_dim}; "
           f"multiply-adds, appendix B)")
    yield from format_table(agent.layer_flops())
    if not measure_updates:
        return
    rng = np.random.default_rng(0)
    before = update_flops(agent, _pixel_batch(cfg, obs_shape, action_dim, rng))
    n = agent.freeze(cfg.freeze_layers)
    networks, feature = agent.latent_spec(n)
    after_batch = (_latent_batch(cfg, (networks, *feature), action_dim, rng)
                   if agent.fully_frozen else _pixel_batch(cfg, obs_shape, action_dim, rng))
    after = update_flops(agent, after_batch)
    with FlopCounter() as store:
        agent.encode_latents(rng.integers(0, 256, (1, *obs_shape), dtype=np.uint8),
                             cfg.latent_augmentations)
    yield ""
    yield f"per update, batch {cfg.batch_size}, measured (forward + 2x backward):"
    yield f"  before Tf (pixels, encoder + CURL): {before:.3e}"
    what = "latents, heads only" if agent.fully_frozen else f"pixels, {n} layers frozen"
    yield f"  after Tf  ({what}): {after:.3e}   ({before / after:.1f}x fewer)"
    yield (f"  per stored observation after Tf (K={cfg.latent_augmentations} crops x "
           f"N={networks} latents, the EKN term): {store.total:.3e}")
