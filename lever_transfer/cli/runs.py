"""Commands that train: ``train``, ``resume``, ``pretrain``, ``finetune`` and ``sweep``, and
the listings and FLOPs table that help choose what to run (``tasks``, ``recipes``, ``flops``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from ..errors import LeverError
from ..registry import describe_agents
from .common import (
    load_run_config,
    main,
    new_run_dir,
    one_line_errors,
    out_option,
    overrides,
    progress_option,
    run_options,
    set_option,
    task_stem,
)

if TYPE_CHECKING:
    from ..sweep import SweepRun


def run_trainer(cfg: Any, run_dir: Path, progress: bool, restore: bool = False,
                prepare: Callable[[Any, bool], None] | None = None, publish: bool = False,
                push_to: str | None = None) -> None:
    """Build the run's Trainer, restore its last checkpoint if ``restore`` and there is one, let
    ``prepare(trainer, restored)`` set it up, train, and print the run folder. A failure before
    training closes the trainer (its environment processes) before the error is shown.

    With ``publish`` every snapshot the run saves is packaged and published to the local hub (and
    pushed to the Hub repo ``push_to``) as the run's events announce it, and, on a resume, those
    a killed attempt saved but did not get to publish."""
    from ..train import Trainer

    trainer = Trainer(cfg, run_dir, progress=progress, say=click.echo)
    try:
        restored = restore and trainer.restore()
        if prepare is not None:
            prepare(trainer, restored)
        if publish and restored:
            from ..zoo.publishing import publish_run_snapshots

            publish_run_snapshots(run_dir, say=click.echo, missing_only=True)
    except BaseException:
        trainer.close()
        raise
    events = trainer.events()
    if publish:
        from ..zoo.publishing import publish_as_saved

        events = publish_as_saved(events, run_dir, push_to, say=click.echo)
    for _ in events:
        pass
    click.echo(f"run directory: {run_dir}")


@main.command(help="Train with LeVER on RECIPE (a recipe name, a .yaml path, a DMC task or an "
                   f"Atari game): {describe_agents()}, as the recipe says.")
@click.argument("recipe")
@click.option("--steps", help="Training length, e.g. 500k (env steps) or '250k agent_steps'.")
@click.option("--freeze-at", help="LeVER's Tf, e.g. 120k (env steps) or '60000 agent_steps'.")
@click.option("--freeze-layers", help="Encoder layers to freeze at Tf: 1..N or 'all' (default).")
@click.option("--replay-memory", help="Replay memory budget, e.g. 0.03GB (sets the capacity).")
@click.option("--no-lever", is_flag=True,
              help=f"The baseline ({describe_agents('baseline')}): never freeze.")
@run_options(out_help="Run directory (default runs/...).",
             set_help="Override any recipe value, e.g. --set batch_size=32 (repeatable).",
             progress_help="No progress bar (for logs).")
@one_line_errors
def train(recipe: str, steps: str | None, freeze_at: str | None, freeze_layers: str | None,
          replay_memory: str | None, no_lever: bool, seed: int | None, device: str | None,
          precision: str | None, sets: tuple[str, ...], out: Path | None,
          no_progress: bool) -> None:
    """Train with LeVER on RECIPE (the help text names the registry's agents)."""
    options = {"steps": steps, "freeze_at": freeze_at, "freeze_layers": freeze_layers,
               "replay_memory": replay_memory, "seed": seed, "device": device,
               "precision": precision, "lever": False if no_lever else None}
    cfg = load_run_config(recipe, options, sets)
    from ..registry import agent_entry

    baseline = agent_entry(cfg.algorithm).baseline.lower()
    run_dir = new_run_dir(out, f"{task_stem(cfg.task)}-{'lever' if cfg.lever else baseline}"
                               f"-s{cfg.seed}")
    run_trainer(cfg, run_dir, not no_progress)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@set_option(help="Change what the checkpoint does not depend on: steps, eval_every, learning "
                 "rates, device... (e.g. a longer run, a lower learning rate).")
@progress_option()
@one_line_errors
def resume(run_dir: Path, sets: tuple[str, ...], no_progress: bool) -> None:
    """Continue RUN_DIR from its last checkpoint (weights, optimizers, replay, RNG, counters)."""
    from ..config import canonical_key, parse_set_options, resumable_keys
    from ..run_dir import RunDir

    run = RunDir(run_dir)
    cfg = run.read_config()
    changes = parse_set_options(list(sets))
    allowed = resumable_keys(cfg)
    fixed = sorted(k for k in changes if canonical_key(cfg, k) not in allowed)
    if fixed:
        raise LeverError(f"resume cannot change {', '.join(fixed)} (the checkpoint depends on "
                         f"it); it can change {', '.join(allowed)}")
    if changes:
        cfg = run.read_config(changes)
    if not run.holds_run():
        raise LeverError(f"{run_dir} has no checkpoint yet; start it again with "
                         f"'lever-transfer train --out {run_dir}'")
    run_trainer(cfg, run_dir, not no_progress, restore=True,
                publish=cfg.snapshot_every is not None)


@main.command(help=f"Train a source agent on RECIPE ({describe_agents()}, as the recipe "
                   f"says) and publish its encoder snapshots to the local hub.")
@click.argument("recipe")
@click.option("--steps", default="60k", show_default=True,
              help="Source training length (the paper pretrains for 60K env steps).")
@click.option("--snapshot-every", default="20k", show_default=True,
              help="Publish TASK-20k, TASK-40k, ... every this many env steps.")
@click.option("--push-to-hub", "push_to", metavar="ORG/NAME",
              help="Also upload every snapshot to this Hugging Face repo (one commit each).")
@run_options(out_help="Run directory (default runs/pretrain-TASK-sSEED); an existing one is "
                      "resumed.")
@one_line_errors
def pretrain(recipe: str, steps: str, snapshot_every: str, push_to: str | None,
             seed: int | None, device: str | None, precision: str | None,
             sets: tuple[str, ...], out: Path | None, no_progress: bool) -> None:
    """Train a source agent on RECIPE and publish its encoder snapshots to the local hub."""
    from ..run_dir import RunDir

    options = {"steps": steps, "snapshot_every": snapshot_every, "seed": seed, "device": device,
               "precision": precision, "lever": False}
    cfg = load_run_config(recipe, options, sets)
    run_dir = out or Path("runs") / f"pretrain-{task_stem(cfg.task)}-s{cfg.seed}"
    if RunDir(run_dir).holds_run():  # (one killed before its first checkpoint starts over)
        click.echo(f"resuming the pretraining in {run_dir}")
    run_trainer(cfg, run_dir, not no_progress, restore=True, publish=True, push_to=push_to)


@main.command()
@click.option("--from", "source", required=True, metavar="REF",
              help="Encoder: hub:NAME[@REV], hf://ORG/REPO[@REV], hf-hub:ORG/REPO or a folder.")
@click.option("--to", "recipe", required=True,
              help="Target recipe or task, e.g. hopper_hop or atari:alien.")
@click.option("--freeze-layers", default="all", show_default=True,
              help="Encoder layers to freeze from step 0: 1..N or 'all' (convs and fc).")
@click.option("--transfer", type=click.Choice(["encoder", "full"]), default="encoder",
              show_default=True, help="encoder: new heads (domain transfer); full: heads too.")
@click.option("--steps", help="Training length, e.g. 100k (env steps).")
@click.option("--replay-memory", help="Replay memory budget, e.g. 0.03GB.")
@run_options()
@one_line_errors
def finetune(source: str, recipe: str, freeze_layers: str, transfer: str, steps: str | None,
             replay_memory: str | None, seed: int | None, device: str | None,
             precision: str | None, sets: tuple[str, ...], out: Path | None,
             no_progress: bool) -> None:
    """Train on a target task from a zoo encoder, its first N layers frozen, on latent replay."""
    from ..envs import check_task
    from ..zoo.hub import resolve
    from ..zoo.transfer import frame_spacing_warning, transfer_config

    resolved = resolve(source, say=lambda m: click.echo(m, err=True))
    package = resolved.package
    options = {"steps": steps, "replay_memory": replay_memory, "seed": seed, "device": device,
               "precision": precision}
    cfg = transfer_config(package, source, transfer, recipe,
                          {"freeze_layers": freeze_layers, **overrides(options, sets)})
    check_task(cfg.task)
    warning = frame_spacing_warning(package, cfg)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    run_dir = new_run_dir(out, f"{task_stem(cfg.task)}-from-{resolved.name}-s{cfg.seed}")
    run_trainer(cfg, run_dir, not no_progress,
                prepare=lambda trainer, _: trainer.load_pretrained(package))


@main.command()
@click.argument("recipe")
@click.option("--seeds", default="0-4", show_default=True, help="Seeds, e.g. 0-4 or 0,3,7.")
@click.option("--tasks", help="Comma-separated tasks to run RECIPE's settings on (default: its "
                              "own task), e.g. atari:qbert,atari:alien.")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="Runs at once (local backend); each uses the cores torch is given.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="local processes, or tasks on a Ray cluster "
                                      "(RAY_ADDRESS; unset: a Ray instance on this machine).")
@click.option("--cpus-per-run", type=click.IntRange(min=1),
              help="Threads of each local run (default: the cores split over --jobs), or the "
                   "CPUs Ray reserves for each run (default 1).")
@click.option("--gpus-per-run", type=click.FloatRange(min=0), default=0.0,
              help="GPUs Ray reserves for each run (fractions share one); Ray backend only.")
@click.option("--steps", help="Training length of every run, e.g. 100k.")
@click.option("--freeze-at", help="LeVER's Tf of every run.")
@click.option("--no-lever", is_flag=True,
              help=f"The baseline ({describe_agents('baseline')}) for every run.")
@click.option("--publish", is_flag=True,
              help="Pretrain every run (no freeze) and publish its snapshots to the local hub "
                   "as TASK-STEPSk: one zoo encoder per task and seed.")
@click.option("--snapshot-every",
              help="With --publish: publish every this many env steps (default: once, at the "
                   "end of each run).")
@click.option("--from", "source", metavar="REF",
              help="Transfer: every run is 'finetune --from REF --to TASK' (each of --tasks, "
                   "else RECIPE), as finetune: frozen from step 0, new heads.")
@click.option("--transfer", type=click.Choice(["encoder", "full"]),
              help="With --from: finetune's --transfer (default encoder).")
@click.option("--freeze-layers", help="With --from: finetune's --freeze-layers (default all).")
@set_option()
@out_option(help="Sweep folder (default runs/sweep-RECIPE); running again resumes it.")
@one_line_errors
def sweep(recipe: str, seeds: str, tasks: str | None, jobs: int, backend: str,
          cpus_per_run: int | None, gpus_per_run: float, steps: str | None,
          freeze_at: str | None, no_lever: bool, publish: bool, snapshot_every: str | None,
          source: str | None, transfer: str | None, freeze_layers: str | None,
          sets: tuple[str, ...], out: Path | None) -> None:
    """Run RECIPE over seeds (and tasks) as separate runs, then report them together."""
    from ..sweep import parse_seeds, plan

    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    if source:
        if freeze_at or no_lever or publish:
            raise LeverError("--from finetunes an encoder frozen from step 0: drop "
                             "--freeze-at, --no-lever and --publish")
        runs, options, out = transfer_runs(recipe, source, task_list, parse_seeds(seeds),
                                           transfer or "encoder", freeze_layers or "all",
                                           steps, sets, out)
        _run_and_report(recipe, runs, options, out, f", finetuning from {source}", jobs,
                        backend, cpus_per_run, gpus_per_run)
        return
    if transfer or freeze_layers:
        raise LeverError("--transfer and --freeze-layers belong to a transfer sweep: add "
                         "--from hub:NAME (the encoder every run starts from)")
    if publish and (freeze_at or no_lever):
        raise LeverError("--publish pretrains sources without LeVER's freeze (as 'pretrain' "
                         "does); drop --freeze-at/--no-lever")
    if snapshot_every and not publish:
        raise LeverError("--snapshot-every publishes snapshots: add --publish")
    flags = {"steps": steps, "freeze_at": freeze_at, "lever": False if no_lever else None}
    if publish:
        flags = {"steps": steps, "lever": False, "snapshot_every": snapshot_every or steps}
    base = load_run_config(recipe, flags, sets)
    if publish and not snapshot_every:  # once, at the run's last step: TASK-STEPSk
        snapshot_every = f"{base.agent_steps(base.steps)} agent_steps"
    for task in task_list or []:  # every run's config is checked before any starts
        load_run_config(recipe, flags, (*sets, f"task={task}"))
    options = [*(["--steps", steps] if steps else []), *(["--freeze-at", freeze_at] if freeze_at
               else []), *(["--no-lever"] if no_lever else []),
               *(["--snapshot-every", snapshot_every] if publish and snapshot_every else []),
               *[part for item in sets for part in ("--set", item)]]
    if publish and not steps:  # pretrain's own default is 60k: keep the recipe's length
        options = ["--steps", f"{base.agent_steps(base.steps)} agent_steps", *options]
    out = out or Path("runs") / f"sweep-{task_stem(Path(recipe).stem)}"
    runs = plan(base.task, task_list, parse_seeds(seeds), out, publish)
    how = ", publishing their snapshots" if publish else ""
    _run_and_report(recipe, runs, options, out, how, jobs, backend, cpus_per_run, gpus_per_run)


def transfer_runs(recipe: str, source: str, tasks: list[str] | None, seeds: list[int],
                  transfer: str, freeze_layers: str, steps: str | None, sets: tuple[str, ...],
                  out: Path | None) -> tuple[list[SweepRun], list[str], Path]:
    """``sweep --from``'s runs (one ``finetune`` per task and seed, every config checked before
    any starts), their options and the sweep folder."""
    from ..envs import check_task
    from ..sweep import plan
    from ..zoo.hub import resolve
    from ..zoo.transfer import transfer_config

    package = resolve(source, say=lambda m: click.echo(m, err=True)).package
    targets = tasks or [recipe]
    for target in targets:
        check_task(transfer_config(package, source, transfer, target,
                                   {"freeze_layers": freeze_layers,
                                    **overrides({"steps": steps}, sets)}).task)
    options = ["--transfer", transfer, "--freeze-layers", freeze_layers,
               *(["--steps", steps] if steps else []),
               *[part for item in sets for part in ("--set", item)]]
    out = out or Path("runs") / f"sweep-{task_stem(Path(recipe).stem)}-from-" \
        f"{task_stem(source.split(':')[-1].split('/')[-1])}"
    return plan(recipe, targets, seeds, out, transfer_from=source), options, out


def _run_and_report(recipe: str, runs: list[SweepRun], options: list[str], out: Path, how: str,
                    jobs: int, backend: str, cpus_per_run: int | None,
                    gpus_per_run: float) -> None:
    from ..report import write_report
    from ..sweep import run_sweep

    where = f"{jobs} at once" if backend == "local" else "placed by Ray's scheduler"
    click.echo(f"sweep: {len(runs)} runs of {recipe} in {out} ({backend}, {where}){how}")
    failed = run_sweep(recipe, runs, options, jobs, backend, say=click.echo,
                       cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    done = [run.run_dir for run in runs if run not in failed]
    if done:
        png, md = write_report(done, out / "report")
        click.echo(f"report: {png} and {md}")
    if failed:
        raise LeverError(f"{len(failed)} of {len(runs)} runs failed; run the same command again "
                         f"to resume them")


@main.command()
@click.argument("recipe")
@set_option()
@click.option("--no-update", is_flag=True, help="Only the per-layer table (no measured updates).")
@one_line_errors
def flops(recipe: str, sets: tuple[str, ...], no_update: bool) -> None:
    """Per-layer forward FLOPs (paper tables 2 and 3), measured FLOPs per update before/after
    Tf, and the whole run's totals."""
    from ..accounting import flops_report

    cfg = load_run_config(recipe, {}, sets)
    for line in flops_report(cfg, measure_updates=not no_update):
        click.echo(line)


@main.command()
@one_line_errors
def tasks() -> None:
    """List the DeepMind Control tasks and the Atari games."""
    from ..envs import list_games, list_tasks

    for name in [*list_tasks(), *list_games()]:
        click.echo(name)


@main.command()
@one_line_errors
def recipes() -> None:
    """List the packaged recipes and the paper setting each reproduces."""
    from ..config import list_recipes

    rows = list_recipes()
    width = max(len(name) for name, _, _ in rows)
    for name, paper, description in rows:
        click.echo(f"{name:<{width}}  {paper or '-':<28}  {description}")
