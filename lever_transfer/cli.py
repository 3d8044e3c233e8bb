"""The ``lever-transfer`` command line.

Every user mistake surfaces as one line, ``error: ...`` (exit status 2), that says how to fix it;
tracebacks are for bugs.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from .errors import LeverError

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


# optional dependencies -> the extras that install them (pyproject.toml)
EXTRAS = {"dm_control": ("dmc",), "mujoco": ("dmc",), "ale_py": ("atari",), "cv2": ("atari",),
          "matplotlib": ("plots",), "stable_baselines3": ("sb3",), "gymnasium": ("dmc", "atari")}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line fix for a command that needs an extra the core install lacks."""
    extras = EXTRAS.get((exc.name or "").split(".")[0])
    if extras is None:
        return None
    installs = " or ".join(f"'lever-transfer[{extra}]'" for extra in extras)
    return (f"this command needs {exc.name}, which the core install leaves out: "
            f"pip install {installs} (or 'lever-transfer[all]' for everything)")


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LeverError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except ModuleNotFoundError as exc:
            fix = missing_extra(exc)
            if fix is None:
                raise
            click.echo(f"error: {fix}", err=True)
            sys.exit(2)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lever-transfer")
def main() -> None:
    """LeVER: pixel RL that freezes its encoder and replays latents; a zoo of frozen encoders."""
    show_library_messages()


class _EchoHandler(logging.Handler):
    """Library log records as plain lines on the stderr of the moment (click swaps it in tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def show_library_messages() -> None:
    """The CLI shows what the ``lever_transfer`` logger says at INFO and above, as plain lines;
    a Python user's own ``logging`` configuration decides instead."""
    logger = logging.getLogger("lever_transfer")
    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        logger.addHandler(_EchoHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _overrides(options: dict[str, Any], sets: tuple[str, ...]) -> dict[str, Any]:
    from .config import parse_set_options

    overrides = parse_set_options(list(sets))
    for key, value in options.items():
        if value is not None:
            overrides[key] = value
    return overrides


# Options several commands take, declared once; a command adds its own help text and default.
seed_option = functools.partial(click.option, "--seed", type=int)
device_option = functools.partial(click.option, "--device",
                                  type=click.Choice(["auto", "cpu", "cuda"]))
set_option = functools.partial(click.option, "--set", "sets", multiple=True, metavar="KEY=VALUE")
out_option = functools.partial(click.option, "--out", type=click.Path(path_type=Path))
progress_option = functools.partial(click.option, "--no-progress", is_flag=True)
precision_option = functools.partial(
    click.option, "--precision", type=click.Choice(["auto", "fp32", "bf16"]),
    help="bf16 autocast or float32; auto: bf16 where the CPU has AMX-BF16 or AVX512-BF16 (or a "
         "CUDA GPU does bf16), float32 elsewhere.")


def run_options(out_help: str | None = None, set_help: str | None = None,
                progress_help: str | None = None) -> Decorator:
    """--seed, --device, --precision, --set, --out and --no-progress: the options of every
    command that starts a run."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        options = [seed_option(), device_option(), precision_option(), set_option(help=set_help),
                   out_option(help=out_help), progress_option(help=progress_help)]
        for option in reversed(options):  # listed in --help in this order
            fn = option(fn)
        return fn
    return decorate


def load_run_config(recipe: str, options: dict[str, Any], sets: tuple[str, ...]):
    """Recipe + flags + --set overrides, validated, with the task checked against dm_control
    or ale-py."""
    from .config import load_config
    from .envs import check_task

    cfg = load_config(recipe, _overrides(options, sets))
    check_task(cfg.task)
    return cfg


def _stem(task: str) -> str:
    """A task as a folder name: ``atari:qbert`` -> ``atari-qbert``."""
    return task.replace(":", "-")


def new_run_dir(out: Path | None, stem: str) -> Path:
    """``--out``, or ``runs/STEM-DATE-TIME``; refused if it already holds a run (a checkpoint:
    an attempt killed before its first one starts again)."""
    from .run_dir import RunDir

    run_dir = out or Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if RunDir(run_dir).holds_run():
        raise LeverError(f"{run_dir} already holds a run; continue it with "
                         f"'lever-transfer resume {run_dir}' or choose another --out")
    return run_dir


def run_trainer(cfg: Any, run_dir: Path, progress: bool, restore: bool = False,
                prepare: Callable[[Any, bool], None] | None = None, publish: bool = False,
                push_to: str | None = None) -> None:
    """Build the run's Trainer, restore its last checkpoint if ``restore`` and there is one, let
    ``prepare(trainer, restored)`` set it up, train, and print the run folder. A failure before
    training closes the trainer (its environment processes) before the error is shown.

    With ``publish`` every snapshot the run saves is packaged and published to the local hub (and
    pushed to the Hub repo ``push_to``) as the run's events announce it, and, on a resume, those
    a killed attempt saved but did not get to publish."""
    from .train import Trainer

    trainer = Trainer(cfg, run_dir, progress=progress, say=click.echo)
    try:
        restored = restore and trainer.restore()
        if prepare is not None:
            prepare(trainer, restored)
        if publish and restored:
            from .zoo.publishing import publish_run_snapshots

            publish_run_snapshots(run_dir, say=click.echo, missing_only=True)
    except BaseException:
        trainer.close()
        raise
    events = trainer.events()
    if publish:
        from .zoo.publishing import publish_as_saved

        events = publish_as_saved(events, run_dir, push_to, say=click.echo)
    for _ in events:
        pass
    click.echo(f"run directory: {run_dir}")


@main.command()
@click.argument("recipe")
@click.option("--steps", help="Training length, e.g. 500k (env steps) or '250k agent_steps'.")
@click.option("--freeze-at", help="LeVER's Tf, e.g. 120k (env steps) or '60000 agent_steps'.")
@click.option("--freeze-layers", help="Encoder layers to freeze at Tf: 1..N or 'all' (default).")
@click.option("--replay-memory", help="Replay memory budget, e.g. 0.03GB (sets the capacity).")
@click.option("--no-lever", is_flag=True, help="The baseline (CURL or Rainbow): never freeze.")
@run_options(out_help="Run directory (default runs/...).",
             set_help="Override any recipe value, e.g. --set batch_size=32 (repeatable).",
             progress_help="No progress bar (for logs).")
@one_line_errors
def train(recipe: str, steps: str | None, freeze_at: str | None, freeze_layers: str | None,
          replay_memory: str | None, no_lever: bool, seed: int | None, device: str | None,
          precision: str | None, sets: tuple[str, ...], out: Path | None,
          no_progress: bool) -> None:
    """Train with LeVER on RECIPE (a recipe name, a .yaml path, a DMC task or an Atari game):
    SAC+CURL on DMC, data-efficient Rainbow on Atari."""
    options = {"steps": steps, "freeze_at": freeze_at, "freeze_layers": freeze_layers,
               "replay_memory": replay_memory, "seed": seed, "device": device,
               "precision": precision, "lever": False if no_lever else None}
    cfg = load_run_config(recipe, options, sets)
    from .registry import agent_entry

    baseline = agent_entry(cfg.algorithm).baseline.lower()
    run_dir = new_run_dir(out, f"{_stem(cfg.task)}-{'lever' if cfg.lever else baseline}"
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
    from .config import canonical_key, parse_set_options, resumable_keys
    from .run_dir import RunDir

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


@main.command()
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
    """Train a source agent on RECIPE (CURL on DMC, Rainbow on Atari) and publish its encoder
    snapshots to the local hub."""
    from .run_dir import RunDir

    options = {"steps": steps, "snapshot_every": snapshot_every, "seed": seed, "device": device,
               "precision": precision, "lever": False}
    cfg = load_run_config(recipe, options, sets)
    run_dir = out or Path("runs") / f"pretrain-{_stem(cfg.task)}-s{cfg.seed}"
    if RunDir(run_dir).holds_run():  # (one killed before its first checkpoint starts over)
        click.echo(f"resuming the pretraining in {run_dir}")
    run_trainer(cfg, run_dir, not no_progress, restore=True, publish=True, push_to=push_to)


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

    from .offline import SETTINGS_FILE, OfflinePretrainer, OfflineSettings
    from .zoo.publishing import publish

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
    from .envs import check_task
    from .zoo.hub import resolve
    from .zoo.transfer import frame_spacing_warning, transfer_config

    resolved = resolve(source, say=lambda m: click.echo(m, err=True))
    package = resolved.package
    options = {"steps": steps, "replay_memory": replay_memory, "seed": seed, "device": device,
               "precision": precision}
    cfg = transfer_config(package, source, transfer, recipe,
                          {"freeze_layers": freeze_layers, **_overrides(options, sets)})
    check_task(cfg.task)
    warning = frame_spacing_warning(package, cfg)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    run_dir = new_run_dir(out, f"{_stem(cfg.task)}-from-{resolved.name}-s{cfg.seed}")
    run_trainer(cfg, run_dir, not no_progress,
                prepare=lambda trainer, _: trainer.load_pretrained(package))


@main.command()
@click.argument("recipe")
@set_option()
@click.option("--no-update", is_flag=True, help="Only the per-layer table (no measured updates).")
@one_line_errors
def flops(recipe: str, sets: tuple[str, ...], no_update: bool) -> None:
    """Per-layer forward FLOPs (paper tables 2 and 3), measured FLOPs per update before/after
    Tf, and the whole run's totals."""
    from .accounting import flops_report

    cfg = load_run_config(recipe, {}, sets)
    for line in flops_report(cfg, measure_updates=not no_update):
        click.echo(line)


@main.command()
@one_line_errors
def tasks() -> None:
    """List the DeepMind Control tasks and the Atari games."""
    from .envs import list_games, list_tasks

    for name in [*list_tasks(), *list_games()]:
        click.echo(name)


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_option(default=Path("report"), show_default=True, help="Folder for report.png and report.md.")
@click.option("--target-return", type=float,
              help="Return for the 'FLOPs to reach' column (default: one every setting reaches).")
@click.option("--at-flops", type=float,
              help="FLOPs budget for the 'return within' column (default: what every setting "
                   "spent; the paper's table 1 uses 4.5e13).")
@click.option("--at-env-steps", type=float,
              help="Env steps for the 'return at' column (default: the last evaluation every "
                   "setting reached).")
@one_line_errors
def report(run_dirs: tuple[Path, ...], out: Path, target_return: float | None,
           at_flops: float | None, at_env_steps: float | None) -> None:
    """Learning curves against env steps and FLOPs (freeze point dotted) and a summary table
    for RUN_DIRS; seeds of one setting are averaged."""
    from .report import write_report

    png, md = write_report(list(run_dirs), out, target_return, at_flops, at_env_steps)
    click.echo(f"wrote {png} and {md}")


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
@click.option("--no-lever", is_flag=True, help="The baseline (CURL or Rainbow) for every run.")
@click.option("--publish", is_flag=True,
              help="Pretrain every run (no freeze) and publish its snapshots to the local hub "
                   "as TASK-STEPSk: one zoo encoder per task and seed.")
@click.option("--snapshot-every",
              help="With --publish: publish every this many env steps (default: once, at the "
                   "end of each run).")
@set_option()
@out_option(help="Sweep folder (default runs/sweep-RECIPE); running again resumes it.")
@one_line_errors
def sweep(recipe: str, seeds: str, tasks: str | None, jobs: int, backend: str,
          cpus_per_run: int | None, gpus_per_run: float, steps: str | None,
          freeze_at: str | None, no_lever: bool, publish: bool, snapshot_every: str | None,
          sets: tuple[str, ...], out: Path | None) -> None:
    """Run RECIPE over seeds (and tasks) as separate runs, then report them together."""
    from .report import write_report
    from .sweep import parse_seeds, plan, run_sweep

    if publish and (freeze_at or no_lever):
        raise LeverError("--publish pretrains sources without LeVER's freeze (as 'pretrain' "
                         "does); drop --freeze-at/--no-lever")
    if snapshot_every and not publish:
        raise LeverError("--snapshot-every publishes snapshots: add --publish")
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
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
    out = out or Path("runs") / f"sweep-{_stem(Path(recipe).stem)}"
    runs = plan(base.task, task_list, parse_seeds(seeds), out, publish)
    how = f"{jobs} at once" if backend == "local" else "placed by Ray's scheduler"
    click.echo(f"sweep: {len(runs)} runs of {recipe} in {out} ({backend}, {how})"
               + (", publishing their snapshots" if publish else ""))
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
@click.argument("suite", type=click.Choice(["atari100k"]))
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_option(default=Path("benchmark"), show_default=True,
            help="Folder for benchmark.md, benchmark.csv and aggregates.png.")
@one_line_errors
def benchmark(suite: str, run_dirs: tuple[Path, ...], out: Path) -> None:
    """Score RUN_DIRS (runs, or folders of runs such as a sweep's) on SUITE against its published
    baseline: per-game table, human-normalised scores and rliable's aggregates (IQM, median,
    mean, optimality gap with 95% intervals)."""
    from .benchmark import write_benchmark

    md, table, png = write_benchmark(list(run_dirs), out)
    click.echo(md.read_text(encoding="utf-8"))
    click.echo(f"wrote {md}, {table} and {png}")


@main.command()
@click.argument("tasks")
@click.option("--episodes", type=click.IntRange(min=1), default=10, show_default=True,
              help="Episodes per task.")
@click.option("--exploration", type=click.Choice(["uniform", "ou", "mixed"]), default="mixed",
              show_default=True, help="Uniform random actions, Ornstein-Uhlenbeck noise, or "
                                      "episodes alternating the two.")
@click.option("--episode-steps", type=click.IntRange(min=1),
              help="Agent steps per episode (default: the whole episode, 1000 env steps).")
@seed_option(default=0, show_default=True)
@out_option(required=True, help="Dataset folder; the same command again continues it.")
@progress_option()
@one_line_errors
def collect(tasks: str, episodes: int, exploration: str, episode_steps: int | None, seed: int,
            out: Path, no_progress: bool) -> None:
    """Roll out DMC TASKS (comma-separated) with exploratory actions into a dataset of shards:
    frames at the zoo encoders' spec, actions, rewards and physics states, for offline
    pretraining and the probe."""
    from .collect import Plan
    from .collect import collect as run_collect

    names = tuple(t.strip() for t in tasks.split(",") if t.strip())
    if not names:
        raise LeverError("TASKS is empty; name DMC tasks such as walker_walk,cheetah_run")
    plan = Plan(names, episodes, seed, exploration, episode_steps)
    manifest = run_collect(plan, out, say=click.echo, progress=not no_progress)
    click.echo(f"dataset: {manifest}")


@main.command(name="eval")
@click.argument("source")
@click.option("--episodes", type=int, default=10, show_default=True)
@click.option("--video", type=click.Path(path_type=Path),
              help="Write the first episode at render resolution: out.gif or out.mp4.")
@seed_option(default=0, show_default=True)
@device_option(default="cpu", show_default=True)
@precision_option(default="auto", show_default=True)
@one_line_errors
def evaluate_command(source: str, episodes: int, video: Path | None, seed: int,
                     device: str, precision: str) -> None:
    """Evaluate a run's latest checkpoint (RUN_DIR) or a zoo package with heads (hub:NAME):
    mean and standard deviation of the return, and optionally a video."""
    from .envs import evaluation_env
    from .evaluate import evaluate, load_policy, write_video
    from .runtime import resolve_device

    if episodes < 1:
        raise LeverError(f"--episodes must be at least 1, got {episodes}")
    cfg, agent, what = load_policy(source, str(resolve_device(device)), precision)
    click.echo(f"evaluating {what} on {cfg.task}, {episodes} episodes", err=True)
    env = evaluation_env(cfg)
    try:
        result = evaluate(agent, env, episodes, seed, record=video is not None)
    finally:
        env.close()
    click.echo(f"{cfg.task}: return {result.mean:.1f} ± {result.std:.1f} over {episodes} "
               f"episodes (min {min(result.returns):.1f}, max {max(result.returns):.1f})")
    if video is not None:
        from .config import is_atari_task

        fps = 15 if is_atari_task(cfg.task) else 30  # Atari steps are 4 frames, DMC 2 or more
        click.echo(f"video: {write_video(result.frames, video, fps)} "
                   f"({len(result.frames)} frames)")


@main.command()
@click.argument("references", nargs=-1, required=True)
@click.option("--task", required=True, help="DMC task whose physics state to probe, e.g. "
                                            "walker_walk, or several: walker_walk,cheetah_run.")
@click.option("--episodes", type=int, default=4, show_default=True,
              help="Episodes to roll out (fewer than 3 are split into contiguous blocks).")
@click.option("--layer", help="Encoder layer to probe: 1..N or a name such as conv4 (default: "
                              "the last, the latent).")
@click.option("--policy", is_flag=True,
              help="Act with the package's own heads instead of uniform random actions.")
@seed_option(default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Also write the result to this JSON file.")
@click.option("--record", is_flag=True,
              help="Keep the result with the package (hub:NAME in the local hub or the shipped "
                   "zoo): its config, model card and 'zoo list' column.")
@precision_option(default="auto", show_default=True)
@one_line_errors
def probe(references: tuple[str, ...], task: str, episodes: int, layer: str | None,
          policy: bool, seed: int, json_path: Path | None, record: bool, precision: str) -> None:
    """Linear probe of frozen encoders (REFERENCES: hub:NAME, hf://ORG/REPO or folders): held-out
    R^2 of ridge regressions from their features to TASK's physics state and reward, next to a
    randomly initialised encoder's, in about a minute per task. Several encoders or tasks give
    one table, every encoder reading the same rollout of each task."""
    tasks = [t.strip() for t in task.split(",") if t.strip()]
    if len(references) > 1 or len(tasks) > 1:
        from .probe import compare

        if record or policy or layer:
            raise LeverError("--record, --policy and --layer probe one encoder on one task; "
                             "leave them out to compare several")
        table = compare(list(references), tasks, episodes=episodes, seed=seed,
                        precision=precision)
        click.echo(table.table())
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(table.to_dict(), indent=2) + "\n", encoding="utf-8")
            click.echo(f"wrote {json_path}")
        return
    reference = references[0]
    from .probe import probe as run_probe
    from .zoo.hub import resolve
    from .zoo.publishing import record_probe

    if record:  # before the minute of probing: can the result be kept where REFERENCE is?
        resolved = resolve(reference, say=lambda message: None)
        if not reference.startswith("hub:") or resolved.source not in ("local hub",
                                                                        "shipped zoo"):
            raise LeverError(f"--record keeps the result beside a hub:NAME package in the local "
                             f"hub or the shipped zoo; {reference} is {resolved.source}")
    result = run_probe(reference, tasks[0], episodes=episodes, layer=layer, policy=policy,
                       seed=seed, precision=precision)
    click.echo(result.table())
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
        click.echo(f"wrote {json_path}")
    if record:
        folder = record_probe(resolved.name, result.to_dict(), resolved.package.path.parent)
        click.echo(f"recorded in {folder} (config.json, README.md) and its index")


@main.command()
@one_line_errors
def recipes() -> None:
    """List the packaged recipes and the paper setting each reproduces."""
    from .config import list_recipes

    rows = list_recipes()
    width = max(len(name) for name, _, _ in rows)
    for name, paper, description in rows:
        click.echo(f"{name:<{width}}  {paper or '-':<28}  {description}")


@main.group()
def zoo() -> None:
    """The encoder zoo: list, show, verify, push, pull and publish encoders."""


@zoo.command("list")
@one_line_errors
def zoo_list() -> None:
    """A table of every encoder the local hub and the shipped zoo know."""
    from .zoo.publishing import entries

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
    from .benchmark import human_normalised

    score = entry.get("eval_return")
    hns = None if score is None else human_normalised(str(entry.get("source_task")), score)
    return "-" if hns is None else f"{hns:.3f}"


def _probe_text(entry: dict[str, Any]) -> str:
    """The recorded probe's overall R^2 (random init's in brackets) and its task."""
    probe = entry.get("probe")
    if not isinstance(probe, dict):
        return "-"
    return f"{probe['r2']:.2f} ({probe['random_init_r2']:.2f}) {probe['task']}"


def _steps_text(entry: dict[str, Any]) -> str:
    return "-" if entry.get("env_steps") is None else f"{entry['env_steps']:,}"


@zoo.command("show")
@click.argument("reference")
@one_line_errors
def zoo_show(reference: str) -> None:
    """Print an encoder's model card (REFERENCE: NAME, hub:NAME, hf://ORG/REPO or a folder)."""
    from .zoo.hub import as_reference, resolve
    from .zoo.package import CARD

    ref = reference if Path(reference).is_dir() else as_reference(reference)
    package = resolve(ref, say=lambda m: click.echo(m, err=True)).package
    card = package.path / CARD
    click.echo(card.read_text(encoding="utf-8") if card.is_file()
               else json.dumps(package.config.to_json(), indent=2))


@zoo.command("verify")
@one_line_errors
def zoo_verify() -> None:
    """Re-hash every encoder on disk against its config and index."""
    from .zoo.publishing import verify

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
    from .zoo.hub import as_reference
    from .zoo.publishing import push, push_all

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
    from .zoo.hub import as_reference
    from .zoo.publishing import pull

    pull(as_reference(reference), name, say=click.echo)


@zoo.command("publish")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@one_line_errors
def zoo_publish(run_dir: Path) -> None:
    """Package a run's snapshots and publish them to the local hub (what pretrain does)."""
    from .zoo.publishing import publish_run_snapshots

    publish_run_snapshots(run_dir, say=click.echo)


if __name__ == "__main__":
    main()
