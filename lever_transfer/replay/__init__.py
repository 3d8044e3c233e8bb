"""Replay that knows its own memory: pixels stored once, latents after LeVER's freeze.

numpy only (no torch): the agent hands conversion an ``encode`` callable.
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
from .storage import BlockArray

__all__ = ["BlockArray", "LatentBatch", "LatentReplay", "PixelBatch", "PixelReplay",
           "capacity_from_memory", "convert_to_latent", "grown_capacity", "latent_entry_bytes",
           "paper_capacity", "parse_memory"]
