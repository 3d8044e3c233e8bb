"""Replay that knows its own memory: pixels stored once, latents after LeVER's freeze.

numpy only (no torch): the agent hands conversion an ``encode`` callable. Storage, sampling
and n-step returns are separate parts: a replay takes its sampler (``UniformSampler`` or
``PrioritizedSampler``), ``n_step`` and ``gamma`` when it is built.
"""

from .convert import (
                      capacity_from_memory,
                      convert_to_latent,
                      grown_capacity,
                      paper_capacity,
                      parse_memory,
)
from .latent import LatentBatch, LatentReplay, latent_entry_bytes
from .pixel import PixelBatch, PixelReplay
from .samplers import PrioritizedSampler, Sampler, UniformSampler, make_sampler
from .storage import BlockArray

__all__ = ["BlockArray", "LatentBatch", "LatentReplay", "PixelBatch", "PixelReplay",
           "PrioritizedSampler", "Sampler", "UniformSampler", "capacity_from_memory",
           "convert_to_latent", "grown_capacity", "latent_entry_bytes", "make_sampler",
           "paper_capacity", "parse_memory"]
