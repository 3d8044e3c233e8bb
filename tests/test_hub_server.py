"""Self-test of tests/hub_server.py: the real huggingface_hub client against the local server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .hub_server import HubServer, hub_server  # noqa: F401  (fixture)

REPO = "lever/encoder"


def make_folder(path: Path, config: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (path / "README.md").write_text("---\nlicense: mit\n---\n# Encoder\n")
    return path


def download(server: HubServer, cache: Path, filename: str = "config.json",
             revision: str | None = None) -> Path:
    return Path(hf_hub_download(REPO, filename, revision=revision, cache_dir=cache,
                                endpoint=server.endpoint))


def test_upload_folder_then_download(hub_server: HubServer, tmp_path: Path) -> None:  # noqa: F811
    api = HfApi(endpoint=hub_server.endpoint, token="x")
    url = api.create_repo(REPO)
    assert url.repo_id == REPO
    api.create_repo(REPO, exist_ok=True)  # 409 on the wire, accepted by the client
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo(REPO)
    assert conflict.value.response.status_code == 409

    folder = make_folder(tmp_path / "pkg", {"hidden": 32})
    info = api.upload_folder(repo_id=REPO, folder_path=folder)
    assert api.list_repo_files(REPO) == ["README.md", "config.json", "model.safetensors"]
    for name in ("config.json", "model.safetensors", "README.md"):
        assert download(hub_server, tmp_path / "cache", name).read_bytes() == \
            (folder / name).read_bytes()
    assert api.model_info(REPO).sha == info.oid
    # Re-uploading unchanged files makes no commit: preupload answers each file's git oid.
    assert api.upload_folder(repo_id=REPO, folder_path=folder).oid == info.oid
    assert len(hub_server.repos[REPO].commits) == 1


def test_pinned_revisions_and_deletions(hub_server: HubServer, tmp_path: Path) -> None:  # noqa: F811
    api = HfApi(endpoint=hub_server.endpoint, token="x")
    api.create_repo(REPO)
    first = api.upload_folder(repo_id=REPO, folder_path=make_folder(tmp_path / "a", {"v": 1}))
    second = api.upload_folder(repo_id=REPO, folder_path=make_folder(tmp_path / "b", {"v": 2}))
    assert first.oid != second.oid and len(first.oid) == 40

    cache = tmp_path / "cache"
    old, new = download(hub_server, cache, revision=first.oid), download(hub_server, cache)
    assert json.loads(old.read_text()) == {"v": 1} and json.loads(new.read_text()) == {"v": 2}
    assert (old.parent.name, new.parent.name) == (first.oid, second.oid)  # snapshots/<sha>/
    assert (cache / f"models--{REPO.replace('/', '--')}" / "refs" / "main").read_text() \
        == second.oid
    assert api.model_info(REPO, revision=first.oid).sha == first.oid

    third = api.delete_file("README.md", repo_id=REPO)
    assert api.list_repo_files(REPO) == ["config.json", "model.safetensors"]
    assert "README.md" in api.list_repo_files(REPO, revision=second.oid)
    assert api.model_info(REPO).sha == third.oid


def test_tree_of_subfolders(hub_server: HubServer) -> None:  # noqa: F811
    sha = hub_server.commit(REPO, {"a/b/c.txt": b"c", "a/d.txt": b"d", "e.txt": b"e"})
    api = HfApi(endpoint=hub_server.endpoint, token="x")
    top = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(REPO)}
    assert top == {"a": "RepoFolder", "e.txt": "RepoFile"}
    nested = [entry.path for entry in api.list_repo_tree(REPO, "a", recursive=True, revision=sha)]
    assert nested == ["a/b", "a/b/c.txt", "a/d.txt"]


def test_quoted_branch_and_file_names(hub_server: HubServer, tmp_path: Path) -> None:  # noqa: F811
    hub_server.commit(REPO, {"x.txt": b"main"})
    hub_server.commit(REPO, {"sub dir/a+b é.txt": b"feature"}, branch="feat/x")
    api = HfApi(endpoint=hub_server.endpoint, token="x")
    api.upload_file(path_or_fileobj=b"more", path_in_repo="sub dir/c#1.txt", repo_id=REPO,
                    revision="feat/x")
    assert api.list_repo_files(REPO, revision="feat/x") == \
        ["sub dir/a+b é.txt", "sub dir/c#1.txt", "x.txt"]
    assert api.list_repo_files(REPO) == ["x.txt"]
    for name, content in (("sub dir/a+b é.txt", b"feature"), ("sub dir/c#1.txt", b"more")):
        assert download(hub_server, tmp_path, name, revision="feat/x").read_bytes() == content
    with pytest.raises(RevisionNotFoundError):  # no implicit branch creation on upload
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO,
                        revision="nope")


def test_offline_loads_from_cache_without_requests(hub_server: HubServer,  # noqa: F811
                                                   tmp_path: Path) -> None:
    sha = hub_server.commit(REPO, {"config.json": b'{"v": 1}'})
    cache = tmp_path / "cache"
    download(hub_server, cache)
    seen = len(hub_server.requests)
    script = ("import sys\nfrom huggingface_hub import hf_hub_download\n"
              "for rev in sys.argv[2:]:\n"
              "    print(open(hf_hub_download(sys.argv[1], 'config.json', revision=rev)).read())")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": hub_server.endpoint,
           "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1"}
    out = subprocess.run([sys.executable, "-c", script, REPO, sha, "main"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['{"v":', '1}'] * 2
    assert len(hub_server.requests) == seen


def test_errors_map_to_client_exceptions(hub_server: HubServer, tmp_path: Path) -> None:  # noqa: F811
    sha = hub_server.commit(REPO, {"config.json": b"{}"})
    cache = tmp_path / "cache"
    api = HfApi(endpoint=hub_server.endpoint, token="x")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("lever/missing", "config.json", cache_dir=cache,
                        endpoint=hub_server.endpoint)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("lever/missing")
    with pytest.raises(RevisionNotFoundError):
        download(hub_server, cache, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        download(hub_server, cache, revision="0" * 40)
    with pytest.raises(RemoteEntryNotFoundError) as missing:
        download(hub_server, cache, "weights.bin")
    assert isinstance(missing.value, EntryNotFoundError)
    assert missing.value.response.headers["X-Repo-Commit"] == sha

    cached = download(hub_server, cache)
    hub_server.online = False
    with pytest.raises(HfHubHTTPError) as down:
        api.model_info(REPO)
    assert down.value.response.status_code == 503
    # The Hub down: a cached file still resolves (by branch or sha), without retries.
    assert download(hub_server, cache) == cached == download(hub_server, cache, revision=sha)
    # Not cached: the client retries (~1 s apart, Retry-After: 0), then gives up.
    with pytest.raises(LocalEntryNotFoundError) as uncached:
        download(hub_server, cache, "other.bin")
    assert isinstance(uncached.value.__cause__, HfHubHTTPError)

    hub_server.stop()  # nothing listens any more: the network-down case, connection refused
    with pytest.raises(Exception) as refused:
        api.model_info(REPO)
    assert type(refused.value).__name__ == "ConnectError"  # httpx2's, in huggingface_hub 2.4
    assert download(hub_server, cache) == cached
