"""SIGKILL inside zoo writes: at every disk-changing call of a publish (copies, fsyncs, renames,
removals), and at random moments of a pretraining that publishes its snapshots. After every kill
the hub holds the old package or the new one, complete; after a rerun everything verifies."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lever_transfer.files import STALE_AFTER_S
from lever_transfer.run_dir import RunDir
from lever_transfer.zoo import hub
from lever_transfer.zoo import publishing as zoo
from lever_transfer.zoo.hub import read_index, resolve, write_index
from lever_transfer.zoo.package import read_package

from .conftest import as_sets, tiny_schedule
from .test_zoo import make_package

NAME = "walker_walk-1k"

# Publishes argv[2] as argv[3] into hub argv[1], SIGKILLing itself at the argv[4]-th call that
# changes the disk; prints how many such calls a whole publish makes.
KILLER = textwrap.dedent("""
    import os, shutil, signal, sys
    from pathlib import Path
    from lever_transfer.zoo import publishing as zoo
    calls = 0
    def killing(fn):
        def wrapper(*args, **kwargs):
            global calls
            calls += 1
            if calls == int(sys.argv[4]):
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return wrapper
    for module, name in [(os, "replace"), (os, "fsync"), (shutil, "copy2"), (shutil, "rmtree")]:
        setattr(module, name, killing(getattr(module, name)))
    zoo.publish(Path(sys.argv[2]), sys.argv[3], root=Path(sys.argv[1]), say=lambda m: None)
    print(calls)
""")


def publish_killed_at(hub: Path, package: Path, call: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", KILLER, str(hub), str(package), NAME, str(call)],
                          capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow  # a publishing subprocess for each write, killed there
def test_sigkill_at_every_write_of_a_publish(small_config, tmp_path, monkeypatch):
    old, _ = make_package(small_config, tmp_path / "old", seed=0)
    new, _ = make_package(small_config, tmp_path / "new", seed=1)
    old_sha, new_sha = (read_package(p).config.sha256 for p in (old, new))
    assert old_sha != new_sha
    monkeypatch.setattr(hub, "shipped_zoo", lambda: tmp_path / "no-shipped-zoo")
    hub_dir = tmp_path / "hub"
    zoo.publish(old, NAME, root=hub_dir, say=lambda m: None)
    shutil.copytree(hub_dir, tmp_path / "whole")
    whole = publish_killed_at(tmp_path / "whole", new, 10**9)
    assert whole.returncode == 0, whole.stderr
    calls = int(whole.stdout)
    assert calls >= 8  # copies, fsyncs, renames and removals of one publish
    for call in range(1, calls + 1):
        attempt = tmp_path / f"hub-{call}"
        shutil.copytree(hub_dir, attempt)
        assert publish_killed_at(attempt, new, call).returncode == -9
        monkeypatch.setenv("LEVER_HUB", str(attempt))
        resolved = resolve(f"hub:{NAME}", say=lambda m: None)  # usable right after the kill
        assert resolved.package.config.sha256 in (old_sha, new_sha), call
        assert zoo.verify(say=lambda m: None) == [], call
        age(attempt.glob(".*.tmp"))  # the killed writer's leftovers, as a later session sees them
        zoo.publish(new, NAME, root=attempt, say=lambda m: None)  # the rerun finishes the job
        entry = read_index(attempt)[NAME]
        assert read_package(attempt / NAME, entry["sha256"]).config.sha256 == new_sha
        assert {p.name for p in attempt.iterdir()} - {hub.INDEX_LOCK} == {NAME, "index.yaml"}, call
        assert "replacing_with" not in read_index(attempt)[NAME]


def age(paths, seconds: float = 2 * STALE_AFTER_S) -> None:
    for path in list(paths):
        then = time.time() - seconds
        os.utime(path, (then, then))


def test_a_publish_removes_stale_temporaries_of_its_name_and_no_others(small_config, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(hub, "shipped_zoo", lambda: tmp_path / "no-shipped-zoo")
    package, _ = make_package(small_config, tmp_path / "package", seed=0)
    root = tmp_path / "hub"
    (root / f".{NAME}.stale.tmp").mkdir(parents=True)
    (root / f".{NAME}.stale.tmp" / "weights.safetensors").write_bytes(b"half written")
    (root / ".index.yaml.stale.tmp").write_bytes(b"half written")
    (root / f".{NAME}.live.tmp").mkdir()  # a writer at work right now
    (root / ".other-encoder.stale.tmp").mkdir()  # another name's: its own writes clean it
    age([root / f".{NAME}.stale.tmp", root / ".index.yaml.stale.tmp",
         root / ".other-encoder.stale.tmp"])
    zoo.publish(package, NAME, root=root, say=lambda m: None)
    left = {p.name for p in root.iterdir() if p.name.startswith(".")} - {hub.INDEX_LOCK}
    assert left == {f".{NAME}.live.tmp", ".other-encoder.stale.tmp"}


@pytest.mark.slow  # real pretraining runs in subprocesses, killed and resumed
def test_sigkill_during_pretraining_then_resume_publishes_every_snapshot(tmp_path, isolated_hub):
    rng = random.Random(int(os.environ.get("KILL_SEED", "0")))
    hub_dir, run = isolated_hub, tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LEVER_HUB": str(hub_dir)}
    schedule = tiny_schedule("atari:qbert", init_steps="50 agent_steps",
                             checkpoint_every="40 agent_steps")
    pretrain = [sys.executable, "-m", "lever_transfer.cli", "pretrain", "atari:qbert",
                "--steps", "300 agent_steps", "--snapshot-every", "100 agent_steps",
                *as_sets(schedule, leave_out=("steps", "freeze_at")), "--no-progress",
                "--out", str(run)]
    for _ in range(int(os.environ.get("KILL_POINTS", "4"))):
        process = subprocess.Popen(pretrain, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(2.0, 9.0))
        process.kill()
        process.wait()
        for name in read_index(hub_dir):  # whatever is published is whole
            read_package(hub_dir / name)
    subprocess.run(pretrain, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env)
    index = read_index(hub_dir)
    snapshots = RunDir(run).snapshots()
    assert len(index) == len(snapshots) == 3 and "qbert-300" in index  # one per 100 steps
    for name, entry in index.items():
        read_package(hub_dir / name, entry["sha256"])
    # a snapshot written but never published (killed in between) is published by the next resume
    shutil.rmtree(hub_dir / "qbert-300")
    write_index(hub_dir, {k: v for k, v in index.items() if k != "qbert-300"})
    resume = [sys.executable, "-m", "lever_transfer.cli", "resume", str(run), "--no-progress"]
    subprocess.run(resume, check=True, capture_output=True, env=env)
    assert read_index(hub_dir)["qbert-300"] == index["qbert-300"]
    read_package(hub_dir / "qbert-300", index["qbert-300"]["sha256"])
