"""lever-transfer: LeVER (latent vector experience replay) and a zoo of reusable frozen encoders.

Data flows one way: environment (uint8 frames) -> encoder -> latent -> replay -> agent update ->
metrics, checkpoints and frozen encoders.
"""

__version__ = "0.1.0"
