"""The core install (torch, numpy, safetensors, huggingface_hub, pyyaml) loads zoo encoders; the
extras' modules are only needed by the commands that use them, which say which extra to install.

Each check runs in a fresh interpreter where the extras' modules cannot be imported (None in
``sys.modules``, as Python does for a module that is not installed). CI also builds a real
core-only environment (.ci/run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each check is a fresh interpreter that imports torch

EXTRAS_MODULES = ["dm_control", "mujoco", "gymnasium", "ale_py", "cv2", "matplotlib",
                  "stable_baselines3", "scipy", "pandas"]
BLOCK = ("import sys\n"
         f"for name in {EXTRAS_MODULES!r}:\n"
         "    sys.modules[name] = None  # importing it raises ModuleNotFoundError\n")


def run(code: str, hub: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEVER_HUB": str(hub), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", BLOCK + code], env=env, capture_output=True,
                          text=True, timeout=300)


def test_loading_a_shipped_encoder_needs_only_the_core(isolated_hub):
    out = run("import torch\n"
              "from lever_transfer import load_encoder, list_encoders\n"
              "encoder = load_encoder('hub:walker_stand-60k')\n"
              "obs = torch.zeros(2, 9, 100, 100, dtype=torch.uint8)\n"
              "print(tuple(encoder(obs).shape), len(list_encoders('walker_stand-*')))\n",
              isolated_hub)
    assert out.returncode == 0, out.stderr
    index = (Path(__file__).parents[1] / "zoo" / "index.yaml").read_text()
    shipped = index.count("\n  walker_stand-")  # SAC+CURL -20k -40340 -60k and DrQ's -60k
    assert shipped >= 4 and out.stdout.split() == ["(2,", "50)", str(shipped)]


@pytest.mark.parametrize("args, extra", [
    (["train", "quickstart", "--steps", "100"], "'lever-transfer[dmc]' or 'lever-transfer[atari]'"),
    (["tasks"], "'lever-transfer[dmc]' or 'lever-transfer[atari]'"),
    (["report", "nowhere"], "'lever-transfer[plots]'"),
])
def test_a_command_that_needs_an_extra_names_it_in_one_line(tmp_path, isolated_hub, args, extra):
    if args[0] == "report":  # a real run folder, so that only the plot is missing
        run_dir = Path(__file__).parent / "data" / "runs-0.1" / "walker_walk-sac_curl"
        args = ["report", str(run_dir), "--out", str(tmp_path / "report")]
    out = run("from lever_transfer.cli import main\n"
              f"sys.argv = ['lever-transfer', *{args!r}]\nmain()\n", isolated_hub)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: this command needs"), out.stderr
    assert f"pip install {extra}" in lines[0]


def test_zoo_commands_need_only_the_core(isolated_hub):
    out = run("from lever_transfer.cli import main\n"
              "sys.argv = ['lever-transfer', 'zoo', 'list']\nmain()\n", isolated_hub)
    assert out.returncode == 0, out.stderr
    assert "walker_stand-60k" in out.stdout
