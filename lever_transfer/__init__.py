"""lever-transfer: LeVER (latent vector experience replay) and a zoo of reusable frozen encoders.

Data flows one way: environment (uint8 frames) -> encoder -> latent -> replay -> agent update ->
metrics, checkpoints and frozen encoders.
"""

import logging

from ._version import __version__ as __version__

__all__ = ["load_encoder", "list_encoders", "ZooEncoder"]

# what the library says goes to the "lever_transfer" logger; silent unless logging is configured
logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):  # lazy: `lever-transfer --help` should not import torch
    if name in __all__:
        from .zoo import encoder

        return getattr(encoder, name)
    raise AttributeError(f"module 'lever_transfer' has no attribute {name!r}")
