"""A small Hugging Face Hub-compatible server for tests, on 127.0.0.1.

The Hub is unreachable from CI, and mocking huggingface_hub's HTTP layer breaks whenever its
client changes, so the tests run the real client against this server instead: the handful of
routes that ``create_repo``, ``upload_folder`` (regular, non-LFS uploads), ``hf_hub_download``
(revision pinning, cache, offline mode) and ``repo_info`` use. Repos keep every commit, so a
download pinned to an old commit gets the old bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
import yaml


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> files
    branches: dict[str, str] = field(default_factory=dict)  # name -> sha

    def files_at(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        sha = self.branches.get(revision, revision)
        return (sha, self.commits[sha]) if sha in self.commits else None


class HubServer:
    """``endpoint`` for HF_ENDPOINT; ``online = False`` refuses every request; ``requests`` and
    ``cards`` record what the client sent."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.cards: list[dict[str, Any]] = []  # README metadata the client asked to validate
        self.online = True
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def commit(self, repo_id: str, branch: str, add: dict[str, bytes], delete: list[str],
               summary: str) -> str:
        with self.lock:
            repo = self.repos[repo_id]
            parent = repo.branches.get(branch)
            files = dict(repo.commits[parent]) if parent else {}
            files.update(add)
            for path in delete:
                files.pop(path, None)
            digest = hashlib.sha1(f"{parent}{summary}{len(repo.commits)}".encode())
            for path in sorted(files):
                digest.update(path.encode() + hashlib.sha256(files[path]).digest())
            sha = digest.hexdigest()
            repo.commits[sha] = files
            repo.branches[branch] = sha
            return sha


def _handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  head: bool = False) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(data).encode(),
                       {"Content-Type": "application/json", **(headers or {})})

        def _error(self, status: int, code: str, message: str, head: bool = False) -> None:
            self._send(status, json.dumps({"error": message}).encode(),
                       {"X-Error-Code": code, "X-Error-Message": message,
                        "Content-Type": "application/json"}, head)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _gate(self) -> bool:
            server.requests.append((self.command, self.path))
            if not server.online:
                self.close_connection = True
                self._send(503, b"hub offline", {"Connection": "close"})
                return False
            return True

        def _repo(self, repo_id: str, head: bool = False) -> Repo | None:
            repo = server.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
            return repo

        def do_POST(self) -> None:  # noqa: N802
            if not self._gate():
                return
            path, body = unquote(urlparse(self.path).path), self._body()
            if path == "/api/repos/create":
                data = json.loads(body)
                repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") \
                    else data["name"]
                url = {"url": f"{server.endpoint}/{repo_id}", "name": repo_id}
                if repo_id in server.repos:
                    return self._json(409, {"error": "You already created this model repo",
                                            **url})
                server.repos[repo_id] = Repo()
                return self._json(200, url)
            if path == "/api/validate-yaml":  # the Hub checks a README's metadata on upload
                try:
                    content = json.loads(body)["content"]
                    if content.startswith("---"):  # a whole README: its front matter
                        content = content.split("---", 2)[1]
                    metadata = yaml.safe_load(content)
                    assert isinstance(metadata, dict)
                except (yaml.YAMLError, AssertionError, KeyError):
                    return self._json(400, {"errors": [{"message": "invalid YAML metadata"}]})
                server.cards.append(metadata)
                return self._json(200, {"errors": [], "warnings": []})
            parts = path.split("/")  # /api/models/ORG/NAME/{preupload|commit}/REV
            if len(parts) < 7 or parts[:3] != ["", "api", "models"]:
                return self._error(404, "EntryNotFound", f"no route {path}")
            repo_id, action, revision = "/".join(parts[3:5]), parts[5], "/".join(parts[6:])
            if self._repo(repo_id) is None:
                return
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                   "shouldIgnore": False} for f in files]})
            if action == "commit":
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                header = next(x["value"] for x in lines if x["key"] == "header")
                add = {x["value"]["path"]: base64.b64decode(x["value"]["content"])
                       for x in lines if x["key"] == "file"}
                delete = [x["value"]["path"] for x in lines
                          if x["key"] in ("deletedFile", "deletedFolder")]
                sha = server.commit(repo_id, revision, add, delete, header.get("summary", ""))
                return self._json(200, {"commitUrl": f"{server.endpoint}/{repo_id}/commit/{sha}",
                                        "commitOid": sha, "pullRequestUrl": None})
            return self._error(404, "EntryNotFound", f"no route {path}")

        def _resolve(self, head: bool) -> None:
            if not self._gate():
                return
            path = unquote(urlparse(self.path).path)
            parts = path.split("/")
            if path.startswith("/api/models/"):
                return self._api_get(parts)
            # /ORG/NAME/resolve/REV/FILE
            if len(parts) < 6 or parts[3] != "resolve":
                return self._error(404, "EntryNotFound", f"no route {path}", head)
            repo = self._repo("/".join(parts[1:3]), head)
            if repo is None:
                return
            found = repo.files_at(parts[4])
            if found is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {parts[4]}", head)
            sha, files = found
            name = "/".join(parts[5:])
            if name not in files:
                return self._error(404, "EntryNotFound", f"{name} does not exist", head)
            content = files[name]
            etag = f'"{hashlib.sha256(content).hexdigest()}"'
            self._send(200, content, {"X-Repo-Commit": sha, "ETag": etag,
                                      "Content-Type": "application/octet-stream"}, head)

        def _api_get(self, parts: list[str]) -> None:
            # /api/models/ORG/NAME/{revision|tree}/REV[/path]
            repo = self._repo("/".join(parts[3:5]))
            if repo is None:
                return
            action = parts[5] if len(parts) > 5 else "revision"
            revision = parts[6] if len(parts) > 6 else "main"
            found = repo.files_at(revision)
            if found is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            sha, files = found
            if action == "tree":
                return self._json(200, [{"type": "file", "path": p, "size": len(c),
                                         "oid": hashlib.sha1(c).hexdigest()}
                                        for p, c in sorted(files.items())])
            return self._json(200, {"id": "/".join(parts[3:5]), "modelId": "/".join(parts[3:5]),
                                    "sha": sha, "private": False,
                                    "siblings": [{"rfilename": p} for p in sorted(files)]})

        def do_HEAD(self) -> None:  # noqa: N802
            self._resolve(head=True)

        def do_GET(self) -> None:  # noqa: N802
            self._resolve(head=False)

    return Handler


@pytest.fixture
def hub_server():
    with HubServer() as server:
        yield server
