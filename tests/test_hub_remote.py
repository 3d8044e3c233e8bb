"""Push and pull through the real huggingface_hub client, against a Hub-compatible server that
the tests start on 127.0.0.1 (the Hugging Face Hub is unreachable from CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lever_transfer.zoo import hub
from lever_transfer.zoo import publishing as zoo
from lever_transfer.zoo.package import read_package

from .hub_server import hub_server  # noqa: F401  (fixture)
from .test_zoo import make_package

pytestmark = pytest.mark.slow  # the command line and the library in fresh interpreters


def cli(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "lever_transfer.cli", *args], env=env,
                         capture_output=True, text=True, timeout=180)
    if ok:
        assert out.returncode == 0, out.stderr
    return out


def load(env: dict[str, str], reference: str) -> subprocess.CompletedProcess:
    script = ("import logging\nfrom lever_transfer import load_encoder\n"
              "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"  # where it went
              f"enc = load_encoder({reference!r})\nprint(enc.config.sha256)")
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture
def env(hub_server, tmp_path, isolated_hub):  # noqa: F811
    return {**os.environ, "HF_ENDPOINT": hub_server.endpoint, "HF_TOKEN": "test-token",
            "HF_HOME": str(tmp_path / "hf"), "LEVER_HUB": str(isolated_hub),
            "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_push_pull_revisions_and_offline(small_config, tmp_path, env, hub_server):  # noqa: F811
    first, _ = make_package(small_config, tmp_path / "a", seed=0)
    second, _ = make_package(small_config, tmp_path / "b", seed=1)
    sha1, sha2 = (read_package(p).config.sha256 for p in (first, second))
    local = Path(env["LEVER_HUB"])
    zoo.publish(first, "walker_walk-1k", local, say=lambda m: None)
    cli(env, "zoo", "push", "walker_walk-1k", "--repo-id", "lever/walker")
    commit1 = hub.read_index(local)["walker_walk-1k"]["revision"]
    assert hub.read_index(local)["walker_walk-1k"]["repo_id"] == "lever/walker"
    zoo.publish(second, "walker_walk-1k", local, say=lambda m: None)
    cli(env, "zoo", "push", "walker_walk-1k", "--repo-id", "lever/walker")
    commit2 = hub.read_index(local)["walker_walk-1k"]["revision"]
    assert commit1 != commit2 and len(commit1) == 40

    # a fresh user: empty local hub, same Hub; revision pinning picks the old weights
    fresh = {**env, "LEVER_HUB": str(tmp_path / "fresh"), "HF_HOME": str(tmp_path / "hf2")}
    old = load(fresh, f"hf://lever/walker@{commit1}")
    assert old.returncode == 0, old.stderr
    assert old.stdout.strip() == sha1 and "hugging face" in old.stderr and commit1 in old.stderr
    new = load(fresh, "hf-hub:lever/walker")
    assert new.returncode == 0 and new.stdout.strip() == sha2

    # offline from the cache: works for what was downloaded, makes no request
    seen = len(hub_server.requests)
    offline = {**fresh, "HF_HUB_OFFLINE": "1"}
    again = load(offline, f"hf://lever/walker@{commit1}")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == sha1 and len(hub_server.requests) == seen

    # pull into the local hub; then hub:NAME resolves locally, bit-exact
    cli(fresh, "zoo", "pull", f"hf://lever/walker@{commit1}", "--name", "walker_walk-1k")
    entry = hub.read_index(tmp_path / "fresh")["walker_walk-1k"]
    assert entry["sha256"] == sha1 and entry["revision"] == commit1
    listed = cli(fresh, "zoo", "list").stdout
    assert "walker_walk-1k" in listed and "local hub" in listed
    assert cli(fresh, "zoo", "verify").returncode == 0


def test_index_entry_without_files_downloads_the_pinned_commit(small_config, tmp_path, env,
                                                               hub_server):  # noqa: F811
    path, _ = make_package(small_config, tmp_path / "a")
    local = Path(env["LEVER_HUB"])
    zoo.publish(path, "walker_walk-1k", local, say=lambda m: None)
    cli(env, "zoo", "push", "walker_walk-1k", "--repo-id", "lever/walker")
    entry = hub.read_index(local)["walker_walk-1k"]
    other = tmp_path / "other"
    hub.write_index(other, {"walker_walk-1k": entry})  # an index that only points at the Hub
    result = load({**env, "LEVER_HUB": str(other)}, "hub:walker_walk-1k")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == entry["sha256"] and "hugging face" in result.stderr


def test_unreachable_hub_and_unknown_repos_are_one_line_errors(tmp_path, env,
                                                               hub_server):  # noqa: F811
    missing = cli(env, "zoo", "pull", "hf://lever/nothing", ok=False)
    assert missing.returncode == 2 and "no Hugging Face repo" in missing.stderr
    hub_server.online = False
    down = cli({**env, "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"},
               "zoo", "pull", "hf://lever/walker", ok=False)
    assert down.returncode == 2 and "Traceback" not in down.stderr
    assert len([x for x in down.stderr.splitlines() if x.startswith("error:")]) == 1
    offline = cli({**env, "HF_HUB_OFFLINE": "1"}, "zoo", "pull", "hf://lever/walker", ok=False)
    assert offline.returncode == 2 and "not in the Hugging Face cache" in offline.stderr


def test_model_card_metadata_survives_the_push(small_config, tmp_path, env,
                                               hub_server):  # noqa: F811
    path, _ = make_package(small_config, tmp_path / "a")
    zoo.publish(path, "walker_walk-1k", Path(env["LEVER_HUB"]), say=lambda m: None)
    cli(env, "zoo", "push", "walker_walk-1k", "--repo-id", "lever/walker")
    card = cli(env, "zoo", "show", "hf://lever/walker").stdout
    assert "model-index" in card and "library_name: lever-transfer" in card
    config = json.loads((path / "config.json").read_text())
    assert config["sha256"] in card


def test_zoo_encoder_follows_huggingface_hub_conventions(small_config, tmp_path, env,
                                                         hub_server):  # noqa: F811
    """save_pretrained / push_to_hub / from_pretrained through huggingface_hub's ModelHubMixin."""
    path, _ = make_package(small_config, tmp_path / "a")
    script = f"""
import torch
from lever_transfer import ZooEncoder, load_encoder
enc = load_encoder({str(path)!r}, freeze_layers=4)
enc.push_to_hub("lever/mixin")
back = ZooEncoder.from_pretrained("lever/mixin", freeze_layers=4)
same = all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), back.state_dict().values()))
print(same, back.frozen_layers, back.observation_spec["crop_size"])
"""
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "4", "84"]


def python(env: dict[str, str], script: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter (HF_ENDPOINT is read once, at import)."""
    return subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True,
                          text=True, timeout=180)


FROM_PRETRAINED = """
import sys
from lever_transfer import ZooEncoder
from lever_transfer.errors import LeverError
repo, revision, cache_dir, local_only = sys.argv[1:5]
try:
    enc = ZooEncoder.from_pretrained(repo, revision=revision or None, cache_dir=cache_dir or None,
                                     local_files_only=local_only == "1")
except LeverError as exc:
    sys.exit(f"error: {exc}")
print(enc.config.sha256)
"""


def test_from_pretrained_honours_revision_cache_dir_and_local_files_only(
        small_config, tmp_path, env, hub_server):  # noqa: F811
    """huggingface_hub's keywords reach the download (they were swallowed by ``**_`` before)."""
    packages = [make_package(small_config, tmp_path / x, seed=i)[0] for i, x in enumerate("ab")]
    shas, commits = [], []
    for package in packages:
        zoo.publish(package, "walker_walk-1k", Path(env["LEVER_HUB"]), say=lambda m: None)
        cli(env, "zoo", "push", "walker_walk-1k", "--repo-id", "lever/walker")
        shas.append(read_package(package).config.sha256)
        commits.append(hub.read_index(Path(env["LEVER_HUB"]))["walker_walk-1k"]["revision"])
    cache = tmp_path / "my-cache"
    fresh = {**env, "HF_HOME": str(tmp_path / "unused-home")}

    pinned = python(fresh, FROM_PRETRAINED, "lever/walker", commits[0], str(cache), "0")
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.strip() == shas[0]  # the first push's weights, not the latest
    latest = python(fresh, FROM_PRETRAINED, "lever/walker", "", str(cache), "0")
    assert latest.stdout.strip() == shas[1]
    assert len(list(cache.rglob("model.safetensors"))) == 2  # the cache_dir holds both
    assert not (tmp_path / "unused-home").exists()  # ...and the default cache nothing

    seen = len(hub_server.requests)
    cached = python(fresh, FROM_PRETRAINED, "lever/walker", commits[0], str(cache), "1")
    assert cached.stdout.strip() == shas[0] and len(hub_server.requests) == seen
    empty = python(fresh, FROM_PRETRAINED, "lever/walker", commits[0], str(tmp_path / "e"), "1")
    assert empty.returncode == 1 and len(hub_server.requests) == seen
    assert f"lever/walker@{commits[0]} is not in the Hugging Face cache" in empty.stderr
    assert "local_files_only=True" in empty.stderr and "Traceback" not in empty.stderr


def test_offline_revision_is_named_in_the_error(tmp_path, env):
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    out = python(offline, FROM_PRETRAINED, "some-org/some-repo", "v2", "", "0")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "some-org/some-repo@v2 is not in the Hugging Face cache" in out.stderr


def test_push_all_uploads_every_encoder_and_records_its_repo(small_config, tmp_path, env,
                                                            hub_server):  # noqa: F811
    """`zoo push --all --org ORG` (here on a copy of a zoo folder, --root): every package goes to
    ORG/NAME, the folder's index records repo and commit, and a fresh user loads each from there
    at that commit, bit-exact."""
    root = tmp_path / "zoo"
    shas = {}
    for seed, name in enumerate(("walker_walk-1k", "walker_walk-2k")):
        package, _ = make_package(small_config, tmp_path / f"p{seed}", seed=seed)
        zoo.publish(package, name, root, say=lambda m: None)
        shas[name] = read_package(package).config.sha256
    wrong = cli(env, "zoo", "push", "--all", "--root", str(root), ok=False)
    assert wrong.returncode != 0 and "--org ORG" in wrong.stderr
    out = cli(env, "zoo", "push", "--all", "--org", "lever", "--root", str(root)).stdout
    assert "pushed 2 encoders to lever/*" in out
    index = hub.read_index(root)
    fresh = {**env, "LEVER_HUB": str(tmp_path / "fresh"), "HF_HOME": str(tmp_path / "hf2")}
    for name, sha in shas.items():
        assert index[name]["repo_id"] == f"lever/{name}" and len(index[name]["revision"]) == 40
        loaded = load(fresh, f"hf://lever/{name}@{index[name]['revision']}")
        assert loaded.returncode == 0, loaded.stderr
        assert loaded.stdout.strip() == sha
