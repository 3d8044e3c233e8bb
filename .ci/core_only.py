"""The core install loads a shipped encoder and runs a forward pass, with none of the extras'
environments installed. Run by .ci/run in a fresh virtual environment with `pip install .`."""

from __future__ import annotations

import importlib.util

import torch

from lever_transfer import list_encoders, load_encoder

absent = ["dm_control", "mujoco", "gymnasium", "ale_py", "cv2", "matplotlib", "stable_baselines3"]
present = [name for name in absent if importlib.util.find_spec(name) is not None]
assert not present, f"the core install pulled in {present}"
encoder = load_encoder("hub:walker_stand-60k")
latent = encoder(torch.zeros(1, 9, 100, 100, dtype=torch.uint8))
assert latent.shape == (1, 50) and not encoder.training
print(f"core install: loaded {encoder.name} ({len(list_encoders())} encoders listed), latent "
      f"{tuple(latent.shape)}; {', '.join(absent)} absent")
