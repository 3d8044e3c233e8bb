"""An in-memory Hugging Face Hub-compatible HTTP server for tests, on 127.0.0.1.

Why: the Hub (huggingface.co) is unreachable from the machines that run these tests, and mocking
huggingface_hub's HTTP layer is brittle: its client has changed more than once across releases. So
tests run the *real* client against this server, passing ``endpoint=server.endpoint`` (or setting
``HF_ENDPOINT`` in a subprocess: huggingface_hub reads it once, at import).

Routes (model repos only): ``POST /api/repos/create``, ``POST /api/validate-yaml``,
``POST /api/models/{repo}/preupload/{rev}`` (every file "regular": content comes inline, no LFS or
Xet), ``POST /api/models/{repo}/commit/{rev}`` (NDJSON),
``GET /api/models/{repo}[/revision/{rev}]``,
``GET /api/models/{repo}/tree/{rev}[/{path}]`` and ``HEAD``/``GET /{repo}/resolve/{rev}/{file}``.
Errors carry ``X-Error-Code`` as on the Hub, so the client raises its own exception classes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

if TYPE_CHECKING:
    from typing_extensions import Self


def git_oid(content: bytes) -> str:
    """The git blob sha1 of ``content``: the Hub's ETag and tree oid of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]  # the full tree at this commit
    message: str = ""


@dataclass
class Repo:
    commits: list[Commit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> commit sha

    def commit_at(self, revision: str) -> Commit | None:
        """The commit a branch name or a full commit sha points at."""
        sha = self.branches.get(revision, revision)
        return next((c for c in self.commits if c.sha == sha), None)


class HubServer:
    """``endpoint`` is the base URL; ``repos`` holds the data; ``requests`` lists every
    ``(method, path)`` received; ``online = False`` answers every request 503 (the Hub down);
    after ``stop()`` connections are refused (the network down)."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.online = True
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever on a server never started
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def create_repo(self, repo_id: str) -> Repo:
        with self.lock:
            return self.repos.setdefault(repo_id, Repo())

    def commit(self, repo_id: str, add: dict[str, bytes], delete: tuple[str, ...] = (),
               branch: str = "main", message: str = "commit") -> str:
        """Commit on ``branch`` (a new branch starts from main's head); returns the new sha.
        Deleting a folder path deletes everything under it. Tests may call it to seed a repo."""
        with self.lock:
            repo = self.repos.setdefault(repo_id, Repo())
            parent = repo.commit_at(branch if branch in repo.branches else "main")
            files = dict(parent.files) if parent else {}
            for path in delete:
                folder = path.rstrip("/") + "/"
                files = {p: c for p, c in files.items() if p != path and not p.startswith(folder)}
            files.update(add)
            digest = hashlib.sha1(f"{parent.sha if parent else ''}\0{message}\0{len(repo.commits)}"
                                  .encode())
            for path in sorted(files):
                digest.update(f"{path}\0{git_oid(files[path])}\0".encode())
            repo.commits.append(Commit(digest.hexdigest(), files, message))
            repo.branches[branch] = digest.hexdigest()
            return digest.hexdigest()


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


def _make_handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
            pass

        def _dispatch(self) -> None:  # do_HEAD, do_GET and do_POST
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with hub.lock:
                hub.requests.append((self.command, self.path))
            if not hub.online:
                return self._send(503, b"Hub offline", {"Retry-After": "0"})
            url = urlsplit(self.path)
            segments = [unquote(s) for s in url.path.split("/")[1:]]  # split first: %2F stays
            try:
                self._route(segments, parse_qs(url.query), body)
            except _HubError as e:
                headers = {"X-Error-Message": ascii(str(e))[1:-1], **e.headers}
                if e.code:
                    headers["X-Error-Code"] = e.code
                self._json(e.status, {"error": str(e)}, headers)

        do_HEAD = do_GET = do_POST = _dispatch

        def _route(self, seg: list[str], query: dict[str, list[str]], body: bytes) -> None:
            post = self.command == "POST"
            if post and seg == ["api", "repos", "create"]:
                return self._create(json.loads(body))
            if post and seg == ["api", "validate-yaml"]:
                return self._validate_yaml(json.loads(body)["content"])
            if seg[:2] == ["api", "models"] and len(seg) >= 4:
                repo_id, action, rest = "/".join(seg[2:4]), seg[4:5], seg[5:]
                repo = self._repo(repo_id)
                if post and "create_pr" in query:
                    raise _HubError(400, None, "This test server has no pull requests")
                if post and action in (["preupload"], ["commit"]) and len(rest) == 1:
                    return self._write(repo_id, repo, action[0], rest[0], body)
                if not post and (action == [] or (action == ["revision"] and len(rest) == 1)):
                    return self._info(repo_id, repo, rest[0] if rest else "main")
                if not post and action == ["tree"] and rest:
                    recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                    return self._tree(repo, rest[0], "/".join(rest[1:]), recursive)
            if not post and len(seg) >= 5 and seg[2] == "resolve":
                return self._resolve(self._repo("/".join(seg[:2])), seg[3], "/".join(seg[4:]))
            raise _HubError(404, None, f"No route for {self.command} {self.path}")

        def _create(self, data: dict[str, Any]) -> None:
            repo_id = "/".join(filter(None, [data.get("organization"), data["name"]]))
            if data.get("type", "model") != "model":
                raise _HubError(400, None, "This test server only hosts model repos")
            url = {"url": f"{hub.endpoint}/{repo_id}", "name": repo_id}
            if repo_id in hub.repos:
                return self._json(409, {"error": "You already created this model repo", **url})
            hub.create_repo(repo_id)
            self._json(200, url)

        def _validate_yaml(self, readme: str) -> None:
            front = readme.split("---", 2)[1] if readme.startswith("---") else ""
            try:
                metadata = yaml.safe_load(front) if front.strip() else {}
                if not isinstance(metadata, dict):
                    raise yaml.YAMLError("metadata is not a mapping")
            except yaml.YAMLError as e:
                return self._json(400, {"errors": [{"message": f"Invalid YAML: {e}"}]})
            self._json(200, {"errors": [], "warnings": []})

        def _repo(self, repo_id: str) -> Repo:
            repo = hub.repos.get(repo_id)
            if repo is None:
                raise _HubError(404, "RepoNotFound", f"Repository not found: {repo_id}")
            return repo

        def _commit_at(self, repo: Repo, revision: str) -> Commit:
            commit = repo.commit_at(revision)
            if commit is None:
                raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return commit

        def _write(self, repo_id: str, repo: Repo, action: str, branch: str, body: bytes) -> None:
            if branch not in repo.branches and not (branch == "main" and not repo.commits):
                raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {branch}")
            current = repo.commit_at(branch)
            files = current.files if current else {}
            if action == "preupload":  # oid lets the client skip files that did not change
                return self._json(200, {"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                     "oid": git_oid(files[f["path"]]) if f["path"] in files else None}
                    for f in json.loads(body)["files"]]})
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = next((x["value"] for x in lines if x["key"] == "header"), {})
            add: dict[str, bytes] = {}
            delete: list[str] = []
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "file":
                    add[value["path"]] = (base64.b64decode(value["content"])
                                          if value.get("encoding") == "base64"
                                          else value["content"].encode())
                elif key in ("deletedFile", "deletedFolder"):
                    path = value["path"].rstrip("/")
                    if key == "deletedFile" and path not in files:
                        raise _HubError(404, "EntryNotFound",
                                        f"A file with this name doesn't exist: {path}")
                    delete.append(path)
                elif key != "header":
                    raise _HubError(400, None, f"Unsupported commit operation {key!r} (no LFS)")
            sha = hub.commit(repo_id, add, tuple(delete), branch, header.get("summary", ""))
            self._json(200, {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{sha}",
                             "commitOid": sha, "success": True})

        def _info(self, repo_id: str, repo: Repo, revision: str) -> None:
            commit = self._commit_at(repo, revision)
            self._json(200, {"id": repo_id, "modelId": repo_id, "sha": commit.sha,
                             "private": False, "disabled": False, "gated": False, "tags": [],
                             "siblings": [{"rfilename": p} for p in sorted(commit.files)]})

        def _tree(self, repo: Repo, revision: str, folder: str, recursive: bool) -> None:
            files = self._commit_at(repo, revision).files
            prefix = folder.strip("/") + "/" if folder.strip("/") else ""
            under = sorted(p[len(prefix):] for p in files if p.startswith(prefix))
            if prefix and not under:
                raise _HubError(404, "EntryNotFound", f"{folder} does not exist on {revision}")
            entries: dict[str, dict[str, Any]] = {}
            for rel in under:
                parts = rel.split("/")
                for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                    path = prefix + "/".join(parts[:depth])
                    oid = hashlib.sha1(path.encode()).hexdigest()
                    entries[path] = {"type": "directory", "oid": oid, "size": 0, "path": path}
                if recursive or len(parts) == 1:
                    content = files[prefix + rel]
                    entries[prefix + rel] = {"type": "file", "oid": git_oid(content),
                                             "size": len(content), "path": prefix + rel}
            self._json(200, [entries[p] for p in sorted(entries)])

        def _resolve(self, repo: Repo, revision: str, filename: str) -> None:
            commit = self._commit_at(repo, revision)
            if filename not in commit.files:
                raise _HubError(404, "EntryNotFound", f"{filename} does not exist",
                                {"X-Repo-Commit": commit.sha})
            content = commit.files[filename]
            self._send(200, content, {"Content-Type": "application/octet-stream",
                                      "ETag": f'"{git_oid(content)}"', "X-Repo-Commit": commit.sha})

        def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(data).encode(),
                       {"Content-Type": "application/json", **(headers or {})})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")  # no keep-alive: stop() really stops
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


@pytest.fixture
def hub_server() -> Iterator[HubServer]:
    """A started, empty HubServer; stopped after the test."""
    with HubServer() as server:
        yield server
