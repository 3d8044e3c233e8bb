"""A package's config is compared with its safetensors header before anything is built or read.

A config.json may declare any layer sizes up to MAX_LAYER_SIZE while its sha256 still matches
small weights: building that network first would allocate hundreds of GB. The crafted packages
here are refused in one line that names the mismatch, by the API and the CLI, in child processes
whose peak memory (measured by the parent) stays under 1 GB. Each child also caps its own address
space just above what its imports use, so a regression fails fast instead of eating the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lever_transfer.zoo import package as pkg
from lever_transfer.zoo.config import MAX_LAYER_SIZE
from lever_transfer.zoo.package import (
    CONFIG,
    WEIGHTS,
    PackageError,
    expected_shapes,
    read_config,
    read_package,
    sha256_file,
)

from .conftest import make_small_config
from .test_zoo import make_package

ROOT = Path(__file__).resolve().parents[1]
GB = 10**9
PEAK_LIMIT_KB = 1 << 20  # 1 GiB, in ru_maxrss units (KB on Linux)
HEADROOM = 1 << 30  # address space a child may add to what its imports mapped
# num_filters, feature_dim (both within MAX_LAYER_SIZE) -> what building the config would allocate
CRAFTED = {"329GB": (8192, 8192), "15GB": (384, 8192)}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory) -> dict[str, Path]:
    """A small real package, and copies whose config claims the CRAFTED sizes (sha256 intact)."""
    root = tmp_path_factory.mktemp("crafted")
    good, _ = make_package(make_small_config, root, name="good")
    out = {"good": good}
    for label, (filters, features) in CRAFTED.items():
        folder = root / label
        shutil.copytree(good, folder)
        config = json.loads((folder / CONFIG).read_text())
        config["architecture_args"].update(num_filters=filters, feature_dim=features)
        config["feature_dim"] = features
        (folder / CONFIG).write_text(json.dumps(config))
        out[label] = folder
    return out


def allocation_bytes(folder: Path) -> int:
    """Bytes that building the config's encoder and heads would allocate (sized on meta here,
    so that this stays safe whatever expected_shapes does)."""
    with torch.device("meta"):
        shapes = expected_shapes(read_config(folder))
    return 4 * sum(torch.Size(shape).numel() for name, (shape, _) in shapes.items()
                   if not name.startswith("actor_fc."))  # actor_fc is the encoder's fc again


def test_crafted_configs_are_within_the_bounds_and_ask_for_what_they_claim(crafted):
    """read_config's size bound lets them through: only the header check stands in the way."""
    for label, (filters, features) in CRAFTED.items():
        config = read_config(crafted[label])
        assert max(config.num_filters, config.feature_dim) <= MAX_LAYER_SIZE
        assert (config.num_filters, config.feature_dim) == (filters, features)
    assert 300 * GB < allocation_bytes(crafted["329GB"]) < 400 * GB
    assert 10 * GB <= allocation_bytes(crafted["15GB"]) <= 20 * GB
    assert os.path.getsize(crafted["329GB"] / WEIGHTS) < 20 * 10**6  # the weights stay small


CHILD = textwrap.dedent("""
    import atexit, os, re, resource, runpy, sys
    import torch, lever_transfer.cli, lever_transfer.zoo.encoder  # the big imports, uncapped

    def report_peak():  # this process's own high-water mark, since its exec
        peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
        open(os.environ["PEAK_FILE"], "w").write(peak)

    atexit.register(report_peak)
    resource.setrlimit(resource.RLIMIT_CPU, (300, 310))  # a runaway child is killed
    status = open("/proc/self/status").read()
    vm = int(re.search(r"VmSize:\\s+(\\d+) kB", status).group(1)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + {headroom}, vm + {headroom}))
    args = sys.argv[1:]
    if args[0] == "api":
        try:
            lever_transfer.zoo.encoder.load_encoder(args[1])
        except lever_transfer.errors.LeverError as exc:
            print(f"error: {{exc}}", file=sys.stderr)
            sys.exit(2)
        sys.exit(0)
    sys.argv = ["lever-transfer", *args]
    runpy.run_module("lever_transfer.cli", run_name="__main__")
""").format(headroom=HEADROOM)


def run_child(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, int]:
    """(exit status, output, peak RSS in KB) of a child running the API or the CLI. The child
    reports its own VmHWM: the parent's ru_maxrss of a forked child would count the pages it
    shared with this (large) test process before its exec."""
    with tempfile.TemporaryDirectory() as folder:
        peak_file = Path(folder) / "peak"
        child = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True,
                               text=True, timeout=600,
                               env={**os.environ, "OMP_NUM_THREADS": "1",
                                    "PEAK_FILE": str(peak_file), **(env or {})})
        return child.returncode, child.stdout + child.stderr, int(peak_file.read_text())


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and output.strip().endswith(lines[0]), output
    assert "Traceback" not in output, output
    return lines[0]


@pytest.mark.slow  # a child process for each
@pytest.mark.parametrize("label, command", [
    ("329GB", "api"), ("329GB", "zoo show"), ("329GB", "finetune"),
    ("15GB", "api"), ("15GB", "eval"), ("15GB", "finetune hub:"),
])
def test_crafted_package_is_refused_in_one_line_within_1gb(crafted, tmp_path, isolated_hub,
                                                           label, command):
    folder = crafted[label]
    env = {"LEVER_HUB": str(isolated_hub)}
    if command == "finetune hub:":
        shutil.copytree(folder, isolated_hub / "crafted-1k")
        (isolated_hub / "index.yaml").write_text(
            f"encoders:\n  crafted-1k: {{sha256: {read_config(folder).sha256}}}\n")
    args = {"api": ["api", str(folder)], "zoo show": ["zoo", "show", str(folder)],
            "eval": ["eval", str(folder)],
            "finetune": ["finetune", "--from", str(folder), "--to", "walker_walk",
                         "--out", str(tmp_path / "run")],
            "finetune hub:": ["finetune", "--from", "hub:crafted-1k", "--to", "walker_walk",
                              "--out", str(tmp_path / "run")]}[command]
    status, output, peak_kb = run_child(*args, env=env)
    line = one_error_line(output)
    filters = CRAFTED[label][0]
    assert status == 2, output
    assert "tensor encoder.layers.0.0.weight is (32, 9, 3, 3) torch.float32" in line, line
    assert f"needs ({filters}, 9, 3, 3) torch.float32" in line and "re-publish" in line, line
    assert peak_kb < PEAK_LIMIT_KB, f"peak RSS {peak_kb} KB refusing {label} via {command}"
    assert not (tmp_path / "run").exists()
    print(f"{label} {command}: peak RSS {peak_kb / 1024:.0f} MB")


@pytest.fixture
def nothing_built_or_read(monkeypatch):
    """Fail if tensor data is read, or a module is built anywhere but on the meta device."""
    def no_read(path):
        raise AssertionError(f"tensor data of {path} read before the header was checked")

    def on_meta(build):
        def wrapper(*args, **kwargs):
            assert torch.get_default_device().type == "meta", "a module was built for real"
            return build(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(pkg, "_load_tensors", no_read)
    monkeypatch.setattr(pkg, "build_encoder", on_meta(pkg.build_encoder))
    monkeypatch.setattr(pkg, "head_modules", on_meta(pkg.head_modules))


def edit_weights(folder: Path, edit) -> None:
    tensors = load_file(str(folder / WEIGHTS))
    edit(tensors)
    save_file(tensors, str(folder / WEIGHTS))
    edit_json(folder, lambda c: c.update(sha256=sha256_file(folder / WEIGHTS)))


def edit_json(folder: Path, edit) -> None:
    config = json.loads((folder / CONFIG).read_text())
    edit(config)
    (folder / CONFIG).write_text(json.dumps(config))


CONV = "encoder.layers.0.0.weight"
MISMATCHES = {
    "one tensor's dtype": (
        lambda f: edit_weights(f, lambda t: t.update({CONV: t[CONV].half()})),
        f"tensor {CONV} is (32, 9, 3, 3) torch.float16, the config's architecture needs "
        f"(32, 9, 3, 3) torch.float32"),
    "a renamed tensor": (
        lambda f: edit_weights(f, lambda t: t.update({CONV + "s": t.pop(CONV)})),
        f"extra tensors ['{CONV}s']; missing tensors ['{CONV}']"),
    "a declared count off by one": (
        lambda f: edit_json(f, lambda c: c.update(num_parameters=c["num_parameters"] + 1)),
        "declares num_parameters"),
    "a declared count that is not a number": (
        lambda f: edit_json(f, lambda c: c.update(num_parameters="7e9")),
        "declares num_parameters '7e9'"),
    "the 329 GB config": (lambda f: edit_json(f, lambda c: c["architecture_args"].update(
        num_filters=8192, feature_dim=8192)), "needs (8192, 9, 3, 3)"),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_mismatch_is_refused_from_the_header_before_building(crafted, tmp_path,
                                                            nothing_built_or_read, case):
    folder = tmp_path / "bad"
    shutil.copytree(crafted["good"], folder)
    damage, words = MISMATCHES[case]
    damage(folder)
    with pytest.raises(PackageError) as refused:
        read_package(folder)
    assert words in str(refused.value) and "\n" not in str(refused.value), refused.value


def test_declared_count_is_written_and_optional(crafted, tmp_path):
    """write_package declares num_parameters; packages without one (the shipped zoo) load."""
    package = read_package(crafted["good"])
    assert package.config.num_parameters == sum(t.numel() for t in package.tensors.values())
    shipped = read_package(ROOT / "zoo" / "qbert-100k")  # dueling heads, noisy buffers
    assert shipped.config.num_parameters is None and shipped.has_heads
