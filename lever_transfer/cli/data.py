"""Commands for offline data and encoders: ``collect`` exploratory datasets, and
``pretrain-offline`` encoders on them without reward."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import LeverError
from .common import (
    main,
    one_line_errors,
    out_option,
    precision_option,
    progress_option,
    seed_option,
    set_option,
)


@main.command()
@click.argument("tasks")
@click.option("--episodes", type=click.IntRange(min=1), default=10, show_default=True,
              help="Episodes per task.")
@click.option("--exploration", type=click.Choice(["uniform", "ou", "mixed", "policy"]),
              default="mixed", show_default=True,
              help="Uniform random actions, Ornstein-Uhlenbeck noise, episodes alternating the "
                   "two, or --policy's actions plus Gaussian noise.")
@click.option("--policy", metavar="REFERENCE",
              help="With --exploration policy: the zoo package with heads that acts (hub:NAME, "
                   "hf://ORG/REPO or a folder), e.g. hub:walker_stand-60k on walker tasks.")
@click.option("--policy-noise", type=click.FloatRange(min=0.0), default=0.3, show_default=True,
              help="Std of the Gaussian noise added to --policy's actions (in [-1, 1]).")
@click.option("--episode-steps", type=click.IntRange(min=1),
              help="Agent steps per episode (default: the whole episode, 1000 env steps).")
@click.option("--action-repeat", "action_repeats", multiple=True, metavar="TASK=N",
              help="Roll TASK out at action repeat N instead of its recipe's (repeatable); "
                   "e.g. to regenerate a dataset collected under an older recipe.")
@seed_option(default=0, show_default=True)
@out_option(required=True, help="Dataset folder; the same command again continues it.")
@progress_option()
@one_line_errors
def collect(tasks: str, episodes: int, exploration: str, policy: str | None,
            policy_noise: float, episode_steps: int | None, action_repeats: tuple[str, ...],
            seed: int, out: Path, no_progress: bool) -> None:
    """Roll out DMC TASKS (comma-separated) with exploratory actions into a dataset of shards:
    frames at the zoo encoders' spec, actions, rewards and physics states, for offline
    pretraining and the probe."""
    from ..collect import Plan
    from ..collect import collect as run_collect

    names = tuple(t.strip() for t in tasks.split(",") if t.strip())
    if not names:
        raise LeverError("TASKS is empty; name DMC tasks such as walker_walk,cheetah_run")
    sha256 = _policy_sha256(exploration, policy)
    plan = Plan(names, episodes, seed, exploration, episode_steps,
                tuple(_task_repeat(text, names) for text in action_repeats),
                policy if sha256 else None, policy_noise if sha256 else 0.0, sha256)
    manifest = run_collect(plan, out, say=click.echo, progress=not no_progress)
    click.echo(f"dataset: {manifest}")


def _policy_sha256(exploration: str, policy: str | None) -> str | None:
    """The sha256 of the package that acts (recorded: another package is another dataset)."""
    if exploration != "policy":
        if policy:
            raise LeverError("--policy acts only with --exploration policy; add it, or leave "
                             "--policy out")
        return None
    if not policy:
        raise LeverError("--exploration policy needs --policy REFERENCE, a zoo package with "
                         "heads, e.g. --policy hub:walker_stand-60k on walker tasks")
    from ..zoo.hub import resolve

    return resolve(policy, say=click.echo).package.config.sha256


def _task_repeat(text: str, tasks: tuple[str, ...]) -> tuple[str, int]:
    task, _, repeat = text.partition("=")
    if task not in tasks or not repeat.isdigit() or int(repeat) < 1:
        raise LeverError(f"--action-repeat {text!r}: expected TASK=N with TASK one of "
                         f"{','.join(tasks)} and N a positive integer, e.g. {tasks[0]}=2")
    return task, int(repeat)


@main.command("pretrain-offline")
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--objective", type=click.Choice(["atc", "curl"]), default="atc", show_default=True,
              help="atc: augmented temporal contrast (positive k steps later); curl: instance "
                   "discrimination (positive: another crop of the same observation).")
@click.option("--updates", type=click.IntRange(min=1), default=20_000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=256, show_default=True)
@click.option("--snapshot-every", type=click.IntRange(min=1), default=5_000, show_default=True,
              help="Updates between published snapshots (NAME-OBJECTIVE-5k, -10k, ...).")
@click.option("--name", default="dmc-multi", show_default=True,
              help="Prefix of the published encoders' names.")
@seed_option(default=0, show_default=True)
@precision_option(default="auto", show_default=True)
@set_option(help="Other settings: lr, temporal_shift, target_tau, predictor_hidden, "
                 "checkpoint_minutes, log_every.")
@out_option(help="Run folder (default runs/pretrain-offline-NAME-OBJECTIVE-sSEED); an existing "
                 "one is resumed.")
@progress_option()
@one_line_errors
def pretrain_offline(data: tuple[Path, ...], objective: str, updates: int, batch_size: int,
                     snapshot_every: int, name: str, seed: int, precision: str,
                     sets: tuple[str, ...], out: Path | None, no_progress: bool) -> None:
    """Train the zoo's encoder without reward on DATA (datasets 'lever-transfer collect' wrote),
    mixing their tasks in every batch, and publish its snapshots to the local hub."""
    import yaml

    from ..offline import SETTINGS_FILE, OfflinePretrainer, OfflineSettings
    from ..zoo.publishing import publish

    extra = {}
    for item in sets:
        key, _, value = item.partition("=")
        extra[key.strip()] = yaml.safe_load(value)
    settable = ("lr", "temporal_shift", "target_tau", "predictor_hidden", "checkpoint_minutes",
                "log_every")
    unknown = sorted(set(extra) - set(settable))
    if unknown:
        raise LeverError(f"--set {', '.join(unknown)}: not a setting of pretrain-offline; --set "
                         f"takes {', '.join(settable)} (the others are options)")
    settings = OfflineSettings(data=tuple(str(d) for d in data), name=name, objective=objective,
                               updates=updates, batch_size=batch_size,
                               snapshot_every=snapshot_every, seed=seed, precision=precision,
                               **extra)
    run_dir = out or Path("runs") / f"pretrain-offline-{name}-{objective}-s{seed}"
    saved = run_dir / SETTINGS_FILE
    if saved.is_file():
        before = OfflineSettings.from_dict(json.loads(saved.read_text()))
        changed = before.changed_in(settings)
        if changed:
            raise LeverError(f"{run_dir} holds a pretraining with other {', '.join(changed)}; "
                             f"give the same settings to resume it (only --updates may grow) or "
                             f"another --out")
    trainer = OfflinePretrainer(settings, run_dir, say=click.echo)
    if trainer.restore():
        click.echo(f"resuming the pretraining in {run_dir} at update {trainer.step}")
    for package in trainer.events(progress=not no_progress):
        publish(package, package.name, say=click.echo)
    click.echo(f"run directory: {run_dir}")
