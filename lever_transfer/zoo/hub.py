"""Where encoders live and how a reference to one is resolved to a verified folder.

References:
- ``hub:NAME[@REV]``: a name in a zoo index (``index.yaml``: name -> sha256, source task, steps,
  metrics, and the Hugging Face repo id and revision if it was pushed). Looked up in order in the
  local hub folder (``LEVER_HUB``, default ``~/.cache/lever-transfer/hub``), the encoders shipped
  with the package (``zoo/``), then the Hugging Face Hub through huggingface_hub (its cache,
  revision pinning, ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` honoured). ``REV`` pins a Hub commit,
  branch or tag, or a prefix of the weights' sha256.
- ``hf://ORG/REPO[@REV]`` and timm's ``hf-hub:ORG/REPO[@REV]``: a Hugging Face repo directly.
- anything else: a folder on disk.

A name held by two sources with different weights is ambiguous and refused (pin it with @REV).
Every resolution says where it went (source, commit, sha256) through ``say``, by default the
``lever_transfer`` logger at INFO (the CLI shows it on stderr; in Python, ``logging`` decides).
``DownloadOptions`` carries huggingface_hub's own download arguments (revision aside) to every
Hub download, as ``from_pretrained`` takes them.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from statistics import fmean
from typing import Any, Iterator, Mapping, Sequence

import yaml

from ..errors import LeverError
from ..files import live_folder, write_atomic
from ..log import Say, info
from .package import (
    CARD,
    CONFIG,
    WEIGHTS,
    EncoderPackage,
    PackageError,
    read_package,
)

INDEX = "index.yaml"
INDEX_LOCK = ".index.lock"
LOCAL, SHIPPED = "local hub", "shipped zoo"  # where hub:NAME looks, in this order
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,95}")
REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class DownloadOptions:
    """huggingface_hub's download arguments, passed through unchanged to ``hf_hub_download``."""

    cache_dir: str | Path | None = None
    force_download: bool = False
    local_files_only: bool = False
    token: str | bool | None = field(default=None, repr=False)

    def kwargs(self) -> dict[str, Any]:
        return {"cache_dir": self.cache_dir, "force_download": self.force_download,
                "local_files_only": self.local_files_only, "token": self.token}


def check_name(name: str) -> str:
    """Refuse names that are not plain folder names (path traversal, separators, '..')."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise LeverError(f"invalid encoder name {name!r}: use lower-case letters, digits, '_', "
                         f"'-' and '.', such as 'walker_stand-20k'")
    return name


def local_hub() -> Path:
    """The local hub folder: $LEVER_HUB, else the user cache."""
    if os.environ.get("LEVER_HUB"):
        return Path(os.environ["LEVER_HUB"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "lever-transfer" / "hub"


def shipped_zoo() -> Path:
    """The zoo shipped inside the package (``zoo/`` in the checkout, package data when
    installed)."""
    return Path(str(resources.files("lever_transfer.shipped_zoo")))


def sources() -> list[tuple[str, Path]]:
    """(label, root) of the folders that hold indexes and packages, in lookup order."""
    return [(LOCAL, local_hub()), (SHIPPED, shipped_zoo())]


def as_reference(text: str) -> str:
    """A bare ``NAME`` on the command line means ``hub:NAME``; anything with a scheme is kept."""
    return text if ":" in text else f"hub:{text}"


# ---------------------------------------------------------------------------- indexes

def read_index(root: Path) -> dict[str, dict[str, Any]]:
    """name -> entry of ``root/index.yaml`` (empty when there is none)."""
    path = Path(root) / INDEX
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise LeverError(f"zoo index {path} is not valid YAML ({exc}); fix or delete it") from None
    entries = data.get("encoders") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
        raise LeverError(f"zoo index {path} must be a mapping 'encoders: {{name: {{...}}}}'; fix "
                         f"or delete it")
    for name in entries:
        check_name(name)
    return entries


@contextmanager
def index_lock(root: Path) -> Iterator[None]:
    """Hold hub folder ``root``'s lock across a read-change-write of its index. Without it two
    processes that publish at once each write back the index they read, and the later one drops
    the other's entries (the package folders stay, unlisted)."""
    from filelock import FileLock

    Path(root).mkdir(parents=True, exist_ok=True)
    with FileLock(str(Path(root) / INDEX_LOCK)):
        yield


def write_index(root: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Replace ``root/index.yaml`` atomically; call it under ``index_lock`` with the entries read
    under the same lock."""
    body = yaml.safe_dump({"encoders": dict(sorted(entries.items()))}, sort_keys=False)
    header = "# lever-transfer zoo index: name -> where the encoder is and what it is\n"
    write_atomic(Path(root) / INDEX, (header + body).encode())


def accepted_sha256(entry: dict[str, Any]) -> tuple[str, ...] | None:
    """The weights an index entry stands for: its sha256, and while ``zoo.publish`` swaps in a
    new package under the same name (``replacing_with``), the new one too."""
    shas = tuple(s for s in (entry.get("sha256"), entry.get("replacing_with")) if s)
    return shas or None


def probe_summary(results: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """What an index entry keeps of the recorded probes (``ProbeResult.to_dict()``, one per
    task): the tasks and the overall R^2, averaged over them, of the encoder and random init."""
    if not results:
        return None
    def mean(key: str) -> float | None:
        defined = [r[key] for r in results if r[key] is not None]
        return round(fmean(defined), 4) if defined else None

    return {"tasks": [r["task"] for r in results], "r2": mean("overall_encoder_r2"),
            "random_init_r2": mean("overall_random_r2")}


def index_entry(name: str, package: EncoderPackage, **extra: Any) -> dict[str, Any]:
    """The index line of a package: enough to list it and to check its weights."""
    config, source = package.config, package.config.source
    entry = {
        "sha256": config.sha256, "source_task": source.get("task"),
        "env_steps": source.get("env_steps"), "agent_steps": source.get("agent_steps"),
        "seed": source.get("seed"), "latent_dim": config.feature_dim,
        "eval_return": source.get("eval_return"), "repo_id": None, "revision": None,
    }
    probe = probe_summary(config.probes)
    return {**entry, **({"probe": probe} if probe else {}), **extra}


# ---------------------------------------------------------------------------- resolution

@dataclass(frozen=True)
class Resolved:
    """A reference resolved to a verified package and where it came from."""

    reference: str
    name: str  # the index name, the Hub repo's name, or the folder's name
    package: EncoderPackage
    source: str  # "local hub", "shipped zoo", "hugging face", "path"
    commit: str | None = None
    repo_id: str | None = None  # the Hugging Face repo it was downloaded from

    def describe(self) -> str:
        sha = self.package.config.sha256[:12]
        commit = f", commit {self.commit}" if self.commit else ""
        return f"{self.reference} -> {self.source} {self.package.path} (sha256 {sha}{commit})"


def split_revision(text: str) -> tuple[str, str | None]:
    name, _, revision = text.partition("@")
    return name, (revision or None)


def resolve(reference: str, say: Say = info,
            options: DownloadOptions = DownloadOptions()) -> Resolved:
    """Resolve and verify ``reference`` (see the module docstring); say what it resolved to."""
    if not isinstance(reference, str) or not reference.strip():
        raise LeverError("empty encoder reference; use hub:NAME, hf://ORG/REPO or a folder")
    ref = reference.strip()
    if ref.startswith("hub:"):
        resolved = _resolve_name(ref, *split_revision(ref[4:]), options)
    elif ref.startswith(("hf://", "hf-hub:")):
        repo, revision = split_revision(ref.split(":", 1)[1].lstrip("/"))
        if not REPO_RE.fullmatch(repo):
            raise LeverError(f"{ref!r}: expected hf://ORG/REPO[@REVISION]")
        package, commit = download(repo, revision, options=options)
        resolved = Resolved(ref, repo.split("/")[-1].lower(), package, "hugging face", commit,
                            repo)
    else:
        path = Path(ref).expanduser()
        if not path.is_dir():
            hint = f"; did you mean hub:{ref}?" if NAME_RE.fullmatch(ref) else ""
            raise LeverError(f"no encoder folder {ref!r}: use hub:NAME (see 'lever-transfer zoo "
                             f"list'), hf://ORG/REPO or an existing folder{hint}")
        resolved = Resolved(ref, path.name, read_package(path), "path")
    say(f"encoder: {resolved.describe()}")
    return resolved


def on_disk(source: str, folder: Path) -> bool:
    """Whether a package folder is there to read. A pip install carries the shipped zoo's index,
    configs and cards but the weights of only some packages (``pyproject.toml``): a shipped
    package without its weights counts as absent (downloaded from its Hub repo if the index
    records one), while one missing from the local hub is damage that reading reports."""
    folder = live_folder(folder)
    return (folder / CONFIG).is_file() and (source != SHIPPED or (folder / WEIGHTS).is_file())


def _candidates(name: str) -> list[tuple[str, Path, dict[str, Any]]]:
    """(source, root, entry) of every index holding ``name``, in lookup order."""
    found = []
    for source, root in sources():
        entry = read_index(root).get(name)
        if entry is not None:
            found.append((source, root, entry))
    return found


def known_names() -> list[str]:
    return sorted({n for _, root in sources() for n in read_index(root)})


def _matches(entry: dict[str, Any], revision: str | None) -> bool:
    if revision is None:
        return True
    sha = str(entry.get("sha256") or "")
    return revision == entry.get("revision") or (len(revision) >= 7 and sha.startswith(revision))


def _resolve_name(ref: str, name: str, revision: str | None,
                  options: DownloadOptions) -> Resolved:
    check_name(name)
    candidates = _candidates(name)
    if not candidates:
        import difflib

        # best first; with 26 names ending in -100k, a near-exact match must not come with two
        # far ones, so only those within 0.1 of the best are named
        ratios = {c: difflib.SequenceMatcher(None, name, c).ratio()
                  for c in difflib.get_close_matches(name, known_names(), n=3)}
        close = [c for c, r in ratios.items() if r > max(ratios.values()) - 0.1]
        hint = f"did you mean {', '.join(close)}?" if close else "see 'lever-transfer zoo list'"
        raise LeverError(f"unknown encoder {name!r}; {hint}")
    pinned = [c for c in candidates if _matches(c[2], revision)]
    present = [c for c in pinned if on_disk(c[0], c[1] / name)]
    if len({c[2].get("sha256") for c in present}) > 1:
        where = ", ".join(f"{s} (sha256 {str(e.get('sha256'))[:12]})" for s, _, e in present)
        raise LeverError(f"hub:{name} is ambiguous: {where} hold different weights; pin one with "
                         f"hub:{name}@SHA256_PREFIX or remove the local copy")
    if present:
        source, root, entry = present[0]
        return Resolved(ref, name, read_package(root / name, accepted_sha256(entry)), source,
                        entry.get("revision"))
    if revision is not None and not pinned:
        _refuse_replaced(name, revision, candidates)
    remote = [c for c in (pinned or candidates) if c[2].get("repo_id")]
    if not remote:
        if any(c[0] == SHIPPED for c in candidates):
            raise LeverError(f"hub:{name}'s weights are not in this install (pip's package "
                             f"carries only some of the shipped zoo's) and no Hugging Face repo "
                             f"is recorded for it; use a checkout of the repository, whose zoo/ "
                             f"has every package, or 'lever-transfer zoo pull' it from a repo")
        raise LeverError(f"hub:{name}" + (f"@{revision}" if revision else "") + " is in the index "
                         "but not on disk and has no Hugging Face repo; pull or publish it again")
    _, _, entry = remote[0]
    if revision is None or _matches(entry, revision):  # the commit the index recorded
        hub_revision, expected = entry.get("revision"), entry.get("sha256")
    else:  # a branch, tag or commit the index does not describe: the config's sha256 still holds
        hub_revision, expected = revision, None
    package, commit = download(entry["repo_id"], hub_revision, expected, options)
    return Resolved(ref, name, package, "hugging face", commit, entry["repo_id"])


def _refuse_replaced(name: str, revision: str,
                     candidates: list[tuple[str, Path, dict[str, Any]]]) -> None:
    """A pin to a package a name held before it was replaced (an index entry's ``replaced``
    list: sha256 and a note on what changed) is one line that says so, not a missing file."""
    for _, _, entry in candidates:
        for old in entry.get("replaced") or []:
            if len(revision) >= 7 and str(old.get("sha256", "")).startswith(revision):
                raise LeverError(f"hub:{name}@{revision} is the package {name} was before it was "
                                 f"replaced: {old.get('note', 'no note')}; use hub:{name} (now "
                                 f"sha256 {str(entry.get('sha256'))[:12]})")


def download(repo_id: str, revision: str | None, expected_sha256: str | None = None,
             options: DownloadOptions = DownloadOptions()) -> tuple[EncoderPackage, str]:
    """Fetch a package's files from one commit of a Hub repo (or the cache); verify them."""
    from huggingface_hub import errors as hf
    from huggingface_hub import hf_hub_download

    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    try:
        config = Path(hf_hub_download(repo_id, CONFIG, revision=revision, **options.kwargs()))
        commit = config.parent.name  # the cache's snapshots/<commit>/ folder
        hf_hub_download(repo_id, WEIGHTS, revision=commit, **options.kwargs())
        try:
            hf_hub_download(repo_id, CARD, revision=commit, **options.kwargs())
        except hf.RemoteEntryNotFoundError:
            pass  # the card is for people; loading does not need it
    except hf.RepositoryNotFoundError:
        raise LeverError(f"no Hugging Face repo {repo_id!r} (or it is private: log in with "
                         f"'hf auth login')") from None
    except hf.RevisionNotFoundError:
        raise LeverError(f"{repo_id} has no revision {revision!r}; check the branch, tag or "
                         f"commit") from None
    except hf.LocalEntryNotFoundError:
        if options.local_files_only:
            raise LeverError(f"{where} is not in the Hugging Face cache"
                             f"{f' {options.cache_dir}' if options.cache_dir else ''} and "
                             f"local_files_only=True; download it once without it") from None
        raise LeverError(f"{where} is not in the Hugging Face cache and the Hub cannot be reached "
                         f"(offline, HF_HUB_OFFLINE=1, or no network); connect once, or use a "
                         f"shipped encoder (lever-transfer zoo list)") from None
    except hf.EntryNotFoundError as exc:
        raise LeverError(f"{where} is not an encoder package ({exc.__class__.__name__}: a file is "
                         f"missing); publish it with 'lever-transfer zoo push'") from None
    except (hf.HfHubHTTPError, OSError) as exc:
        raise LeverError(f"the Hugging Face Hub could not serve {where} "
                         f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]}); retry, or "
                         f"set HF_HUB_OFFLINE=1 to use the cache") from None
    try:
        return read_package(config.parent, expected_sha256), commit
    except PackageError as exc:
        raise PackageError(f"{where}: {exc}") from None
