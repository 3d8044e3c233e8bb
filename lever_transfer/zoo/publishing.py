"""The zoo's operations: publish snapshots into the local hub, list, verify, push and pull.

The local hub folder holds one package folder per name and an ``index.yaml``; the shipped zoo
(``zoo/`` in the checkout) has the same layout. Pushing uploads a package folder unchanged to a
Hugging Face model repo (so its sha256 still holds) and records the repo and commit in the local
index; pulling downloads one into the local hub.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..checkpoint import load_checkpoint
from ..config import Config
from ..encoders import make_encoder
from ..errors import LeverError
from ..events import Event, SnapshotSaved
from ..files import default_permissions, live_folder, replace_dir, write_atomic
from ..log import Say, info
from ..registry import SUITE_CHANNELS, agent_entry
from ..run_dir import RunDir
from . import hub
from .card import model_card
from .config import parse_config
from .hub import (
    accepted_sha256,
    check_name,
    index_entry,
    index_lock,
    local_hub,
    probe_summary,
    read_index,
    resolve,
    write_index,
)
from .package import (
    CARD,
    CONFIG,
    WRITTEN_KEYS,
    EncoderPackage,
    PackageError,
    encoder_spec,
    read_config,
    read_package,
    write_package,
)


def snapshot_name(task: str, env_steps: int) -> str:
    """``walker_stand-20k`` for 20,000 env steps (``qbert-100k`` for atari:qbert); the exact count
    when it is not whole thousands."""
    task = task.removeprefix("atari:")
    return f"{task}-{env_steps // 1000}k" if env_steps % 1000 == 0 else f"{task}-{env_steps}"


def package_config(cfg: Config, action_dim: int, *, agent_steps: int, flops: int,
                   eval_return: float | None, eval_return_std: float | None, wall_s: float,
                   with_heads: bool, curve: list[dict[str, Any]] | None = None,
                   cpu_s: float | None = None) -> dict[str, Any]:
    """config.json of an encoder trained by a run with ``cfg`` (everything but the sha256).

    ``action_dim`` is the action count of a discrete (Atari) task; ``curve`` the run's
    evaluations up to this point (``learning_curve``), which the model card shows; ``cpu_s``
    the run's CPU seconds (None for runs logged before metrics had them)."""
    from ..agents import agent_class

    entry = agent_entry(cfg.algorithm)
    obs_shape = (SUITE_CHANNELS[entry.suite] * cfg.frame_stack, cfg.crop_size, cfg.crop_size)
    encoder = make_encoder(cfg.encoder, obs_shape, cfg.feature_dim, cfg.num_filters,
                           cfg.num_conv_layers)
    config = encoder_spec(encoder, cfg.encoder, cfg.frame_stack, cfg.render_size, cfg.crop_size,
                          cfg.num_filters, cfg.action_repeat)
    config["source"] = {
        "task": cfg.task,
        "algorithm": entry.label + ("+LeVER" if cfg.lever else ""),
        "action_repeat": cfg.action_repeat, "agent_steps": agent_steps,
        "env_steps": agent_steps * cfg.action_repeat, "seed": cfg.seed, "flops": flops,
        "eval_return": eval_return, "eval_return_std": eval_return_std,
        "eval_episodes": cfg.eval_episodes, "wall_s": wall_s, "render_quality": cfg.render_quality,
        "precision": cfg.precision,
        "recipe": cfg.to_dict(),
    }
    if cpu_s is not None:
        config["source"]["cpu_s"] = cpu_s
    if curve:
        config["source"]["curve"] = curve
    if with_heads:
        config["heads"] = agent_class(cfg.algorithm).heads_config(cfg, action_dim)
    return config



def learning_curve(run_dir: Path, up_to_agent_step: int) -> list[dict[str, Any]]:
    """The run's evaluations up to ``up_to_agent_step``: env steps, return (mean and standard
    deviation), FLOPs, wall and CPU seconds at each, for the card of a snapshot published from
    it (runs logged before metrics had ``cpu_s`` have no CPU seconds)."""
    return [{"env_steps": row["env_steps"], "return": row["eval_return"],
             "return_std": row.get("eval_return_std"), "flops": row.get("flops"),
             "wall_s": row.get("wall_s")} | ({"cpu_s": row["cpu_s"]} if "cpu_s" in row else {})
            for row in RunDir(run_dir).metrics()
            if row.get("kind") == "eval" and row["agent_steps"] <= up_to_agent_step]


def package_snapshot(snapshot: Path, packages: Path, name: str | None = None) -> tuple[str, Path]:
    """Turn a run's snapshot (weights + evaluation, see ``Trainer.snapshot``) into the package
    ``packages/NAME`` (NAME from the task and the true env steps unless given)."""
    _, state = load_checkpoint(snapshot)
    cfg = Config.from_dict(state["config"], origin=f"{snapshot}/state.json")
    weights = state["weights"]
    from ..agents import agent_class

    action_dim = agent_class(cfg.algorithm).action_size_of(weights, cfg)
    name = check_name(name or snapshot_name(cfg.task, int(state["env_steps"])))
    config = package_config(cfg, action_dim, agent_steps=int(state["agent_steps"]),
                            flops=int(state["flops"]), eval_return=state["eval_return"],
                            eval_return_std=state["eval_return_std"], wall_s=state["wall_s"],
                            cpu_s=state.get("cpu_s"), with_heads=True,
                            curve=learning_curve(Path(snapshot).parent.parent,
                                                 int(state["agent_steps"])))
    tensors = agent_class(cfg.algorithm).package_tensors(weights, len(config["layers"]),
                                                         with_heads=True)
    path = write_package(Path(packages) / name, tensors, config, lambda c: model_card(name, c))
    return name, path


def publish(package_dir: Path, name: str, root: Path | None = None, say: Say = info,
            why: str | None = None) -> Path:
    """Copy a verified package into a hub folder (the local hub by default) under ``name``.

    Publishing other weights under a name keeps the old digest in the entry's ``replaced`` list
    with ``why`` (or what the old package was), so a pin to it says what changed."""
    root = Path(root or local_hub())
    check_name(name)
    package = read_package(package_dir)
    sha = package.config.sha256
    with index_lock(root):  # the whole swap: another publisher reads the index after it
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.", suffix=".tmp"))
        default_permissions(tmp)
        try:
            for file in Path(package_dir).iterdir():
                if file.is_file():
                    shutil.copy2(file, tmp / file.name)
            read_package(tmp, sha)  # the copy is the package, byte for byte
            entries = read_index(root)
            old = entries.get(name, {})
            if old.get("sha256") not in (None, sha):  # readers accept both while the folder swaps
                write_index(root, {**entries, name: {**old, "replacing_with": sha}})
            replace_dir(tmp, root / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        keep: dict[str, Any] = {k: old[k] for k in ("repo_id", "revision")
                                if old.get("sha256") == sha and k in old}
        replaced = list(old.get("replaced") or [])
        if old.get("sha256") not in (None, sha):
            was = (f"{name} was {old.get('env_steps')} env steps of {old.get('source_task')}, "
                   f"evaluation return {old.get('eval_return')}")
            replaced.append({"sha256": old["sha256"], "date": time.strftime("%Y-%m-%d"),
                             "note": f"{was}; {why}" if why else was})
        if replaced:
            keep["replaced"] = replaced
        entries[name] = index_entry(name, package, **keep)
        write_index(root, entries)
    say(f"published {name} -> {root / name}")
    return root / name


def publish_run_snapshots(run_dir: Path, root: Path | None = None, say: Say = info,
                          missing_only: bool = False) -> list[str]:
    """Package and publish every snapshot of a run (``RunDir.snapshots``).

    ``missing_only``: skip those the hub already holds intact (a resumed ``pretrain`` publishes
    what a crash kept from being published, or left half-indexed)."""
    run, names = RunDir(run_dir), []
    for snapshot in run.snapshots():
        name, path = package_snapshot(snapshot, run.packages_dir)
        if not (missing_only and _published(path, name, root)):
            publish(path, name, root, say)
        names.append(name)
    if not names and not missing_only:
        raise LeverError(f"{run_dir} has no snapshots yet; 'lever-transfer pretrain' writes them "
                         f"every snapshot_every steps")
    return names


def publish_as_saved(events: Iterable[Event], run_dir: Path, push_to: str | None = None,
                     root: Path | None = None, say: Say = info) -> Iterator[Event]:
    """Pass a run's events through, publishing each snapshot as it is announced: what
    ``lever-transfer pretrain`` does, for Python callers too::

        trainer = Trainer(cfg, run_dir)
        for event in publish_as_saved(trainer.events(), run_dir):
            ...

    Each snapshot is packaged into the run's ``packages`` folder, published to ``root`` (the
    local hub by default) and, with ``push_to``, pushed to that Hugging Face repo. Announced
    only once a checkpoint holds it, so a run killed after the announcement resumes past it and
    ``publish_run_snapshots(missing_only=True)`` publishes what the kill kept from the hub."""
    packages = RunDir(run_dir).packages_dir
    for event in events:
        if isinstance(event, SnapshotSaved):
            name, package = package_snapshot(event.path, packages)
            publish(package, name, root, say)
            if push_to:
                push(f"hub:{name}", push_to, say=say)
        yield event


def _published(package_dir: Path, name: str, root: Path | None) -> bool:
    """Whether hub ``root`` holds ``package_dir`` as ``name``, indexed and verified."""
    root = Path(root or local_hub())
    sha = read_config(package_dir).sha256
    entry = read_index(root).get(name, {})
    if entry.get("sha256") != sha or entry.get("replacing_with"):
        return False
    try:
        read_package(root / name, sha)
    except PackageError:
        return False
    return True


def entries() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(name, where, entry) of every encoder the local hub and the shipped zoo know."""
    seen: dict[str, str | None] = {}
    for source, root in hub.sources():
        for name, entry in read_index(root).items():
            where = source if hub.on_disk(source, root / name) else (
                f"hf://{entry['repo_id']}" if entry.get("repo_id") else
                f"{source} (weights not installed)" if source == hub.SHIPPED else
                f"{source} (missing)")
            if name in seen and seen[name] == entry.get("sha256"):
                continue  # the same package in the local hub and the shipped zoo: list it once
            seen[name] = entry.get("sha256")
            yield name, where, entry


def verify(say: Say = info) -> list[str]:
    """Re-hash every package on disk against its config and index, and check that index and
    folders agree (a package folder the index does not list, an entry whose folder is missing
    and that no Hub repo holds); the names that fail."""
    failed = []
    for source, root in hub.sources():
        listed = read_index(root)
        for name, entry in listed.items():
            folder = live_folder(root / name)
            if not hub.on_disk(source, folder):
                if source == hub.SHIPPED and (folder / CONFIG).is_file():
                    say(f"absent  {name} ({source}): its weights are not in this install; a "
                        f"checkout's zoo/ has them" + (f", or hf://{entry['repo_id']}"
                                                        if entry.get("repo_id") else ""))
                elif entry.get("repo_id"):
                    say(f"remote  {name} ({source}): on hf://{entry['repo_id']} only; "
                        f"'lever-transfer zoo pull {name}' downloads it")
                else:
                    failed.append(name)
                    say(f"MISSING {name} ({source}): indexed, but {folder} is not there and no "
                        f"Hub repo is recorded; publish it again or remove its index entry")
                continue
            try:
                read_package(folder, accepted_sha256(entry))
                say(f"ok      {name} ({source}) sha256 {entry.get('sha256', '')[:12]}")
            except PackageError as exc:
                failed.append(name)
                say(f"FAILED  {name} ({source}): {exc}")
        for name in unlisted_folders(root, listed):
            failed.append(name)
            say(f"UNLISTED {name} ({source}): {root / name} holds a package the index does not "
                f"list; publish it again ('lever-transfer zoo publish RUN_DIR') or delete it")
    return failed


def unlisted_folders(root: Path, listed: dict[str, Any]) -> list[str]:
    """Package folders in hub folder ``root`` (a ``config.json`` inside) that its index lacks."""
    if not Path(root).is_dir():
        return []
    return sorted(p.name for p in Path(root).iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in listed
                  and (p / CONFIG).is_file())


def push(reference: str, repo_id: str, private: bool | None = None, say: Say = info) -> str:
    """Upload a package folder as it is to ``repo_id``; record repo and commit in the local
    index."""
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf

    resolved = resolve(reference, say)
    package = resolved.package
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        upload = api.upload_folder(repo_id=repo_id, folder_path=str(package.path),
                                 allow_patterns=["model.safetensors", "config.json", "README.md"],
                                 commit_message=f"lever-transfer: {reference}")
    except (hf.HfHubHTTPError, OSError, ValueError) as exc:
        raise LeverError(f"could not push to {repo_id} ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0][:160]}); check the network, HF_ENDPOINT and "
                         f"your token ('hf auth login')") from None
    commit = upload.oid
    if reference.startswith("hub:"):
        name = resolved.name
        root = local_hub()
        with index_lock(root):
            local = read_index(root)
            entry = local.get(name) or index_entry(name, package)
            local[name] = {**entry, "repo_id": repo_id, "revision": commit}
            write_index(root, local)
    say(f"pushed {reference} -> hf://{repo_id}@{commit}")
    return commit


def push_all(org: str, root: Path | None = None, private: bool | None = None,
             say: Say = info) -> dict[str, str]:
    """Upload every encoder on disk in hub folder ``root`` (default: the shipped zoo) to
    ``ORG/NAME`` and record repo and commit in ``root``'s index, so an install that lacks a
    package's files downloads it from there; name -> commit."""
    root = Path(root or hub.shipped_zoo())
    commits = {}
    for name in read_index(root):
        folder = live_folder(root / name)
        if not (folder / CONFIG).is_file():
            say(f"skipped {name}: its folder is not in {root}")
            continue
        commits[name] = push(str(folder), f"{org}/{name}", private, say)
        with index_lock(root):
            entries = read_index(root)
            entries[name] = {**entries[name], "repo_id": f"{org}/{name}",
                             "revision": commits[name]}
            write_index(root, entries)
    return commits


def pull(reference: str, name: str | None = None, say: Say = info) -> Path:
    """Download an encoder (``hub:NAME`` known to an index, or ``hf://ORG/REPO``) into the local
    hub."""
    resolved = resolve(reference, say)
    name = check_name(name or resolved.name)
    path = publish(resolved.package.path, name, local_hub(), say)
    if resolved.repo_id is not None:  # downloaded: remember where from
        root = local_hub()
        with index_lock(root):
            local = read_index(root)
            local[name] = {**local[name], "repo_id": resolved.repo_id,
                           "revision": resolved.commit}
            write_index(root, local)
    return path


def record_probe(name: str, results: Sequence[dict[str, Any]], root: Path) -> Path:
    """Keep probe results (``ProbeResult.to_dict()``, one per task) with the package ``name`` of
    the hub folder ``root``: config.json's ``probes``, the card's probe section and the index
    entry's ``probe`` (what ``zoo list`` shows). A task probed again replaces its earlier result;
    other tasks' are kept. The weights and their sha256 are untouched; each file is replaced
    atomically."""
    with index_lock(root):
        entries = read_index(root)
        if name not in entries:
            raise LeverError(f"{name} is not in the index of {root}; publish it there first")
        folder = live_folder(Path(root) / name)
        package = read_package(folder, accepted_sha256(entries[name]))
        probes = {p["task"]: dict(p) for p in package.config.probes}
        probes.update({r["task"]: r for r in results})  # in place, keeping the order
        document = {**package.config.to_json(), "probes": list(probes.values())}
        config = parse_config(document, str(folder / CONFIG))
        write_atomic(folder / CONFIG, json.dumps(document, indent=2, sort_keys=True).encode())
        write_atomic(folder / CARD, model_card(name, config).encode())
        entries[name] = {**entries[name], "probe": probe_summary(config.probes)}
        write_index(root, entries)
    return folder


def show(reference: str, say: Say = info) -> EncoderPackage:
    return resolve(reference, say).package


# ---------------------------------------------------------------- maintenance of shipped packages

def convert_package(src: Path, dst: Path, dtype: str = "float16", name: str | None = None
                    ) -> Path:
    """Write the verified package ``src`` again into ``dst`` with its weights stored as ``dtype``
    (float16: half the file, for packages shipped in a checkout; loading gives float32 again).

    The config is kept except what ``write_package`` fills in (new sha256, ``stored_dtype``); the
    model card is regenerated for ``name`` (default: ``dst``'s folder name), since it quotes the
    sha256. ``dst`` is written atomically and may be ``src``. Example::

        convert_package("runs/x/packages/walker_stand-60k", "zoo/walker_stand-60k")
    """
    package = read_package(src)
    name = name or Path(dst).name
    config = {k: v for k, v in package.config.to_json().items() if k not in WRITTEN_KEYS}
    card = (lambda c: model_card(name, c)) if package.config.source else None
    return write_package(Path(dst), package.tensors, config, card, dtype=dtype)


def rewrite_shipped_cards(root: Path) -> list[str]:
    """Write every package's card in the zoo folder ``root`` again from its config (after a
    change to card.py); weights and sha256 are untouched. Returns the names."""
    names = sorted(read_index(root))
    for name in names:
        folder = Path(root) / name
        write_atomic(folder / CARD, model_card(name, read_package(folder).config).encode())
    return names
