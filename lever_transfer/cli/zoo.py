"""``lever-transfer zoo``: list, show, verify, push, pull and publish encoder packages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import LeverError
from .common import main, one_line_errors


@main.group()
def zoo() -> None:
    """The encoder zoo: list, show, verify, push, pull and publish encoders."""


@zoo.command("list")
@one_line_errors
def zoo_list() -> None:
    """A table of every encoder the local hub and the shipped zoo know."""
    from ..zoo.publishing import entries

    rows = [(name, str(e.get("source_task")), _steps_text(e), str(e.get("latent_dim")),
             "-" if e.get("eval_return") is None else f"{e['eval_return']:.1f}",
             _hns_text(e), _probe_text(e), where)
            for name, where, e in entries()]
    if not rows:
        click.echo("no encoders yet: 'lever-transfer pretrain walker_stand' publishes some")
        return
    head = ("name", "source task", "env steps", "latent", "eval return", "HNS", "probe R^2",
            "where")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _hns_text(entry: dict[str, Any]) -> str:
    """An Atari-100k game's human-normalised evaluation return ('-' for other tasks)."""
    from ..benchmark import human_normalised

    score = entry.get("eval_return")
    hns = None if score is None else human_normalised(str(entry.get("source_task")), score)
    return "-" if hns is None else f"{hns:.3f}"


def _probe_text(entry: dict[str, Any]) -> str:
    """The recorded probes' overall R^2 (random init's in brackets) and their task, or their
    mean over several tasks."""
    probe = entry.get("probe")
    if not isinstance(probe, dict) or probe.get("r2") is None:
        return "-"
    tasks = probe.get("tasks") or [probe.get("task")]  # "task": one-probe indexes
    where = tasks[0] if len(tasks) == 1 else f"mean of {len(tasks)} tasks"
    return f"{probe['r2']:.2f} ({probe['random_init_r2']:.2f}) {where}"


def _steps_text(entry: dict[str, Any]) -> str:
    return "-" if entry.get("env_steps") is None else f"{entry['env_steps']:,}"


@zoo.command("show")
@click.argument("reference")
@one_line_errors
def zoo_show(reference: str) -> None:
    """Print an encoder's model card (REFERENCE: NAME, hub:NAME, hf://ORG/REPO or a folder)."""
    from ..zoo.hub import as_reference, resolve
    from ..zoo.package import CARD

    ref = reference if Path(reference).is_dir() else as_reference(reference)
    package = resolve(ref, say=lambda m: click.echo(m, err=True)).package
    card = package.path / CARD
    click.echo(card.read_text(encoding="utf-8") if card.is_file()
               else json.dumps(package.config.to_json(), indent=2))


@zoo.command("verify")
@one_line_errors
def zoo_verify() -> None:
    """Re-hash every encoder on disk against its config and index."""
    from ..zoo.publishing import verify

    failed = verify(say=click.echo)
    if failed:
        raise LeverError(f"{len(failed)} encoder(s) failed verification: {', '.join(failed)}; "
                         f"pull or publish them again")


@zoo.command("push")
@click.argument("name", required=False)
@click.option("--repo-id", metavar="ORG/NAME", help="The Hub repo to upload NAME to.")
@click.option("--all", "push_every", is_flag=True,
              help="Upload every encoder of the shipped zoo (or --root) to ORG/NAME each and "
                   "record the repos in its index.")
@click.option("--org", help="With --all: the Hub organisation (or user) of the repos.")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False),
              help="With --all: a hub folder other than the shipped zoo.")
@click.option("--private", is_flag=True, default=None)
@one_line_errors
def zoo_push(name: str | None, repo_id: str | None, push_every: bool, org: str | None,
             root: Path | None, private: bool | None) -> None:
    """Upload encoder NAME to the Hugging Face Hub (HF_ENDPOINT and your token honoured), or with
    --all --org ORG every shipped encoder, recording where each went."""
    from ..zoo.hub import as_reference
    from ..zoo.publishing import push, push_all

    if push_every:
        if name or repo_id or not org:
            raise LeverError("--all pushes every encoder to ORG/NAME: give --org ORG, and no "
                             "NAME or --repo-id")
        pushed = push_all(org, root, private, say=click.echo)
        click.echo(f"pushed {len(pushed)} encoders to {org}/*; their index records the repos")
        return
    if not name or not repo_id or org or root:
        raise LeverError("give NAME and --repo-id ORG/NAME (or --all --org ORG for every shipped "
                         "encoder)")
    push(as_reference(name), repo_id, private, say=click.echo)


@zoo.command("pull")
@click.argument("reference")
@click.option("--name", help="Name in the local hub (default: from the reference).")
@one_line_errors
def zoo_pull(reference: str, name: str | None) -> None:
    """Download an encoder (NAME from the index, or hf://ORG/REPO[@REV]) into the local hub."""
    from ..zoo.hub import as_reference
    from ..zoo.publishing import pull

    pull(as_reference(reference), name, say=click.echo)


@zoo.command("publish")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@one_line_errors
def zoo_publish(run_dir: Path) -> None:
    """Package a run's snapshots and publish them to the local hub (what pretrain does)."""
    from ..zoo.publishing import publish_run_snapshots

    publish_run_snapshots(run_dir, say=click.echo)

