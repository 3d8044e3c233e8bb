"""Commands that measure: ``eval`` a policy, ``probe`` what an encoder holds, ``report``
runs as curves and tables, ``benchmark`` them against a suite's published scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import LeverError
from .common import device_option, main, one_line_errors, out_option, precision_option, seed_option


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
    from ..envs import evaluation_env
    from ..evaluate import evaluate, load_policy, write_video
    from ..runtime import resolve_device

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
        from ..config import is_atari_task

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
              help="Keep the results with the package (hub:NAME in the local hub or the shipped "
                   "zoo): its config, model card and 'zoo list' column; with several tasks, one "
                   "probe per task.")
@precision_option(default="auto", show_default=True)
@one_line_errors
def probe(references: tuple[str, ...], task: str, episodes: int, layer: str | None,
          policy: bool, seed: int, json_path: Path | None, record: bool, precision: str) -> None:
    """Linear probe of frozen encoders (REFERENCES: hub:NAME, hf://ORG/REPO or folders): held-out
    R^2 of ridge regressions from their features to TASK's physics state and reward, next to a
    randomly initialised encoder's, in about a minute per task. Several encoders or tasks give
    one table, every encoder reading the same rollout of each task."""
    tasks = [t.strip() for t in task.split(",") if t.strip()]
    if not tasks:
        raise LeverError("--task is empty; name a DMC task such as walker_walk, or several: "
                         "walker_walk,cheetah_run")
    if len(references) > 1 or (len(tasks) > 1 and not record):
        from ..probe import compare

        if record or policy or layer:
            raise LeverError("--record, --policy and --layer probe one encoder; leave them out "
                             "to compare several")
        table = compare(list(references), tasks, episodes=episodes, seed=seed,
                        precision=precision)
        click.echo(table.table())
        if json_path is not None:
            _write_json(json_path, table.to_dict())
        return
    reference = references[0]
    from ..probe import probe as run_probe
    from ..zoo.hub import resolve
    from ..zoo.publishing import record_probe

    if record:  # before the minutes of probing: can the results be kept where REFERENCE is?
        resolved = resolve(reference, say=lambda message: None)
        if not reference.startswith("hub:") or resolved.source not in ("local hub",
                                                                        "shipped zoo"):
            raise LeverError(f"--record keeps the result beside a hub:NAME package in the local "
                             f"hub or the shipped zoo; {reference} is {resolved.source}")
    results = []
    for one_task in tasks:
        result = run_probe(reference, one_task, episodes=episodes, layer=layer, policy=policy,
                           seed=seed, precision=precision)
        click.echo(result.table())
        results.append(result.to_dict())
    if json_path is not None:
        _write_json(json_path, results[0] if len(results) == 1 else results)
    if record:
        folder = record_probe(resolved.name, results, resolved.package.path.parent)
        click.echo(f"recorded in {folder} (config.json, README.md) and its index")


def _write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    click.echo(f"wrote {path}")


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
    from ..report import write_report

    png, md = write_report(list(run_dirs), out, target_return, at_flops, at_env_steps)
    click.echo(f"wrote {png} and {md}")


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
    from ..benchmark import write_benchmark

    md, table, png = write_benchmark(list(run_dirs), out)
    click.echo(md.read_text(encoding="utf-8"))
    click.echo(f"wrote {md}, {table} and {png}")
