"""The hub index under concurrency and drift: publishers in separate processes keep every
entry (the index lock), and ``zoo verify`` reports folders the index lacks and entries whose
folder is gone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from lever_transfer.zoo import hub
from lever_transfer.zoo import publishing as zoo

from .test_zoo import make_package

# Publishes the package argv[2] into hub argv[1] as argv[3]-0 ... argv[3]-14, starting only once
# the file argv[4] exists, so both publishers run their read-modify-writes at the same time.
PUBLISHER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from lever_transfer.zoo import publishing as zoo
    while not Path(sys.argv[4]).exists():
        time.sleep(0.005)
    for i in range(15):
        zoo.publish(Path(sys.argv[2]), f"{sys.argv[3]}-{i}", root=Path(sys.argv[1]),
                    say=lambda m: None)
""")


@pytest.mark.slow  # two publishing processes
def test_two_processes_publishing_at_once_keep_all_thirty_entries(small_config, tmp_path):
    package, _ = make_package(small_config, tmp_path / "out")
    root, start = tmp_path / "hub", tmp_path / "start"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    publishers = [subprocess.Popen([sys.executable, "-c", PUBLISHER, str(root), str(package),
                                    prefix, str(start)], env=env, stderr=subprocess.PIPE,
                                   text=True)
                  for prefix in ("alpha", "beta")]
    time.sleep(0.5)
    start.touch()
    for process in publishers:
        assert process.wait(timeout=300) == 0, process.stderr.read() if process.stderr else ""
    expected = {f"{prefix}-{i}" for prefix in ("alpha", "beta") for i in range(15)}
    assert set(hub.read_index(root)) == expected
    assert {p.name for p in root.iterdir() if p.is_dir()} == expected


def test_verify_reports_unlisted_folders_and_missing_entries(small_config, tmp_path,
                                                             isolated_hub, monkeypatch):
    package, _ = make_package(small_config, tmp_path / "out")
    root = isolated_hub
    monkeypatch.setattr(hub, "shipped_zoo", lambda: tmp_path / "no-shipped-zoo")
    for name in ("kept-1k", "gone-1k", "remote-1k"):
        zoo.publish(package, name, root=root, say=lambda m: None)
    assert zoo.verify(say=lambda m: None) == []
    shutil.copytree(root / "kept-1k", root / "stray-1k")  # a folder the index never listed
    shutil.rmtree(root / "gone-1k")
    shutil.rmtree(root / "remote-1k")
    with hub.index_lock(root):
        entries = hub.read_index(root)
        entries["remote-1k"] = {**entries["remote-1k"], "repo_id": "org/remote"}
        hub.write_index(root, entries)
    lines: list[str] = []
    assert sorted(zoo.verify(say=lines.append)) == ["gone-1k", "stray-1k"]
    text = "\n".join(lines)
    assert "MISSING gone-1k" in text and "publish it again" in text
    assert "UNLISTED stray-1k" in text
    assert "remote  remote-1k" in text and "zoo pull remote-1k" in text  # on the Hub: not a fault
    assert "ok      kept-1k" in text
