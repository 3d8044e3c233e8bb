"""LeVER's switch (section 4): freeze the encoder at Tf and re-encode the replay into latents.

At agent step Tf the agent freezes encoder layers 1..N, the pixel replay is re-encoded in place
into a latent replay whose capacity grows by the ratio of real bytes per entry (section 4.2),
and from then on the replay stores latents and updates touch only the heads. If the latent at
the chosen layer is not smaller than the pixels it replaces (conv features), pixels are kept and
the frozen layers run without gradients. The replay's sizes before the switch are here too: they
follow from the same entry sizes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .agents import Agent
from .config import Config, is_atari_task
from .flops import FlopCounter
from .replay import LatentReplay, PixelReplay, Sampler, capacity_from_memory, grown_capacity
from .replay.convert import convert_to_latent
from .replay.latent import latent_entry_bytes

DMC_EPISODE_ENV_STEPS = 1000  # every DMC task ends by its 1000-step time limit


def entries_for(cfg: Config, agent_steps: int) -> int:
    """Replay entries that hold ``agent_steps`` transitions: one more per episode.

    Atari episodes have no fixed length: table 5's "number of training steps" is used as is."""
    if is_atari_task(cfg.task):
        return agent_steps + 1
    episode = math.ceil(DMC_EPISODE_ENV_STEPS / cfg.action_repeat)
    return agent_steps + math.ceil(agent_steps / episode) + 1


def pixel_capacity(cfg: Config, entry_bytes: int, sampler: Sampler) -> int:
    """Entries of the pixel replay: a memory budget's worth (the sampler's state, such as a
    priority tree, counts against it), a capacity, or the whole run (table 4, figure 2)."""
    if cfg.replay_memory_bytes is not None:
        return capacity_from_memory(cfg.replay_memory_bytes, entry_bytes + sampler.slot_bytes,
                                    cfg.batch_size)
    if cfg.replay_capacity is not None:
        return cfg.replay_capacity
    return entries_for(cfg, cfg.agent_steps(cfg.steps))


@dataclass(frozen=True)
class LatentPlan:
    """What freezing will store: ``shape`` is (K copies, N networks, *feature)."""

    frozen_layers: int
    num_layers: int
    shape: tuple[int, ...]
    dtype: str
    entry_bytes: int        # one latent entry, its record included
    pixel_entry_bytes: int  # one pixel entry, its record included

    @property
    def use_latents(self) -> bool:
        return self.frozen_layers > 0 and self.entry_bytes < self.pixel_entry_bytes

    def describe(self) -> str:
        """The header's account of the switch."""
        n, layers = self.frozen_layers, self.num_layers
        if self.use_latents:
            return (f"freeze {n}/{layers} encoder layers, then latent replay {self.shape} "
                    f"{self.dtype} = {self.entry_bytes} B per entry vs {self.pixel_entry_bytes} B "
                    f"of pixels")
        return (f"freeze {n}/{layers} layers; the latent {self.shape} = {self.entry_bytes} B is "
                f"not smaller than the pixels ({self.pixel_entry_bytes} B): keeping pixels, "
                f"frozen layers run without gradients")


def latent_plan(agent: Agent, cfg: Config, action_dim: int, pixel_entry_bytes: int
                ) -> LatentPlan:
    n = agent.encoder.resolve_layers(cfg.freeze_layers)
    networks, feature = agent.latent_spec(n) if n else (1, ())
    shape = (cfg.latent_augmentations, networks, *feature)
    return LatentPlan(n, agent.num_layers, shape, cfg.latent_dtype,
                      latent_entry_bytes(shape, action_dim, np.dtype(cfg.latent_dtype)),
                      pixel_entry_bytes)


def freeze_and_convert(agent: Agent, replay: PixelReplay | LatentReplay, plan: LatentPlan,
                       entries_to_come: int) -> tuple[PixelReplay | LatentReplay, dict[str, Any]]:
    """Freeze ``agent`` and, if latents are smaller, return the replay re-encoded with room for
    ``entries_to_come`` more entries (within the memory the pixels held); the metrics row
    says what happened, its ``conversion_flops`` what re-encoding cost."""
    agent.freeze(plan.frozen_layers)
    row: dict[str, Any] = {"kind": "freeze", "frozen_layers": plan.frozen_layers,
                           "latent_replay": plan.use_latents, "capacity_before": replay.capacity,
                           "transitions_before": len(replay)}
    start = time.perf_counter()
    if plan.use_latents and isinstance(replay, PixelReplay):
        held = len(replay) + replay.waiting  # those whose n-step window is still open too
        slot = replay.sampler.slot_bytes  # a priority tree counts against the budget
        capacity = grown_capacity(replay.capacity, replay.bytes_per_entry + slot,
                                  plan.entry_bytes + slot, max_entries=held + entries_to_come)
        with FlopCounter() as counter:
            replay = convert_to_latent(
                replay, lambda stacks: agent.encode_latents(stacks, plan.shape[0]),
                plan.shape, capacity, np.dtype(plan.dtype))
        row["conversion_flops"] = counter.total
    row.update(capacity_after=replay.capacity, transitions_after=len(replay),
               conversion_s=round(time.perf_counter() - start, 3))
    return replay, row
