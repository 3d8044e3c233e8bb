"""The ``lever-transfer`` command line.

Every user mistake surfaces as one line, ``error: ...`` (exit status 2), that says how to fix it;
tracebacks are for bugs.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from .errors import LeverError


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LeverError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lever-transfer")
def main() -> None:
    """LeVER: pixel RL that freezes its encoder and replays latents; a zoo of frozen encoders."""


def _overrides(options: dict[str, Any], sets: tuple[str, ...]) -> dict[str, Any]:
    from .config import parse_set_options

    overrides = parse_set_options(list(sets))
    for key, value in options.items():
        if value is not None:
            overrides[key] = value
    return overrides


def load_run_config(recipe: str, options: dict[str, Any], sets: tuple[str, ...]):
    """Recipe + flags + --set overrides, validated, with the task checked against dm_control."""
    from .config import load_config
    from .envs import parse_task

    cfg = load_config(recipe, _overrides(options, sets))
    parse_task(cfg.task)
    return cfg


@main.command()
@click.argument("recipe")
@click.option("--steps", help="Training length, e.g. 500k (env steps) or '250k agent_steps'.")
@click.option("--freeze-at", help="LeVER's Tf, e.g. 120k (env steps) or '60000 agent_steps'.")
@click.option("--freeze-layers", help="Encoder layers to freeze at Tf: 1..5 or 'all' (default).")
@click.option("--replay-memory", help="Replay memory budget, e.g. 0.03GB (sets the capacity).")
@click.option("--seed", type=int)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--no-lever", is_flag=True, help="Plain CURL: never freeze (the baseline).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any recipe value, e.g. --set batch_size=32 (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory (default runs/...).")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
@one_line_errors
def train(recipe: str, steps: str | None, freeze_at: str | None, freeze_layers: str | None,
          replay_memory: str | None, seed: int | None, device: str | None, no_lever: bool,
          sets: tuple[str, ...], out: Path | None, no_progress: bool) -> None:
    """Train SAC+CURL with LeVER on RECIPE (a recipe name, a .yaml path, or a DMC task)."""
    options = {"steps": steps, "freeze_at": freeze_at, "freeze_layers": freeze_layers,
               "replay_memory": replay_memory, "seed": seed, "device": device,
               "lever": False if no_lever else None}
    cfg = load_run_config(recipe, options, sets)
    run_dir = out or Path("runs") / f"{cfg.task}-{'lever' if cfg.lever else 'curl'}-s{cfg.seed}-" \
                                    f"{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / "checkpoints").exists():
        raise LeverError(f"{run_dir} already holds a run; continue it with "
                         f"'lever-transfer resume {run_dir}' or choose another --out")
    from .train import Trainer

    trainer = Trainer(cfg, run_dir, progress=not no_progress)
    trainer.run()
    click.echo(f"run directory: {run_dir}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--no-progress", is_flag=True)
@one_line_errors
def resume(run_dir: Path, no_progress: bool) -> None:
    """Continue RUN_DIR from its last checkpoint (weights, optimizers, replay, RNG, counters)."""
    import yaml

    from .config import Config
    from .train import Trainer

    config_file = run_dir / "config.yaml"
    if not config_file.exists():
        raise LeverError(f"{run_dir} is not a run directory (no config.yaml); "
                         f"start one with 'lever-transfer train'")
    cfg = Config.from_dict(yaml.safe_load(config_file.read_text()))
    trainer = Trainer(cfg, run_dir, progress=not no_progress)
    if not trainer.restore():
        trainer.close()
        raise LeverError(f"{run_dir} has no checkpoint yet; start it again with "
                         f"'lever-transfer train --out {run_dir}'")
    trainer.run()
    click.echo(f"run directory: {run_dir}")


@main.command()
@click.argument("recipe")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--no-update", is_flag=True, help="Only the per-layer table (no measured updates).")
@one_line_errors
def flops(recipe: str, sets: tuple[str, ...], no_update: bool) -> None:
    """Per-layer forward FLOPs (paper table 2) and measured FLOPs per update before/after Tf."""
    from .accounting import flops_report

    cfg = load_run_config(recipe, {}, sets)
    for line in flops_report(cfg, measure_updates=not no_update):
        click.echo(line)


@main.command()
def tasks() -> None:
    """List the DeepMind Control tasks."""
    from .envs import list_tasks

    for name in list_tasks():
        click.echo(name)


@main.command()
def recipes() -> None:
    """List the packaged recipes and the paper setting each reproduces."""
    from .config import list_recipes

    rows = list_recipes()
    width = max(len(name) for name, _, _ in rows)
    for name, paper, description in rows:
        click.echo(f"{name:<{width}}  {paper or '-':<28}  {description}")


if __name__ == "__main__":
    main()
