"""The shipped zoo is package data: found from an installed wheel, without the checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_shipped_encoder_loads_from_an_installed_wheel(tmp_path, isolated_hub):
    dist, site = tmp_path / "dist", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                    str(ROOT)], check=True, timeout=300)
    (wheel,) = dist.glob("lever_transfer-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(wheel)], check=True, timeout=300)
    script = ("import lever_transfer, logging\n"
              "from lever_transfer import load_encoder\n"
              "logging.basicConfig(level=logging.INFO)\n"  # where it resolved to, on stderr
              "enc = load_encoder('hub:walker_stand-60k', freeze_layers='all')\n"
              "print(lever_transfer.__file__)\n"
              "print(enc.metadata['env_steps'], enc.metadata['task'])")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120,
                         env={"PYTHONPATH": str(site), "LEVER_HUB": str(isolated_hub),
                              "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    module_file, steps = out.stdout.strip().splitlines()
    assert module_file.startswith(str(site))  # not the checkout
    assert steps == "60000 walker_stand" and "shipped zoo" in out.stderr
    package = site / "lever_transfer"
    assert (package / "py.typed").is_file()  # PEP 561: type checkers read its annotations
    assert (package / "recipes" / "dmc" / "drq_defaults.yaml").is_file()

    # the wheel carries three packages' weights (pyproject.toml); the others say where they are
    zoo = package / "shipped_zoo"
    weights = sorted(p.parent.name for p in zoo.glob("*/model.safetensors"))
    assert weights == ["dmc-multi-atc-10k", "qbert-100k", "walker_stand-60k"]
    assert sum(p.stat().st_size for p in zoo.glob("*/model.safetensors")) < 30e6
    assert (zoo / "walker_stand-20k" / "README.md").is_file()  # every card and config ships
    missing = subprocess.run(
        [sys.executable, "-c", "from lever_transfer import load_encoder\n"
         "load_encoder('hub:walker_stand-20k')"], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, env={"PYTHONPATH": str(site), "LEVER_HUB": str(isolated_hub),
                          "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert missing.returncode != 0
    assert "weights are not in this install" in missing.stderr and "checkout" in missing.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "lever_transfer.cli", "zoo", "verify"], cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(site), "LEVER_HUB": str(isolated_hub),
             "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "absent  walker_stand-20k" in listed.stdout and "ok      qbert-100k" in listed.stdout
