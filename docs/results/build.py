"""Regenerate the tables of docs/results.md from the run folders committed under docs/results/.

    python docs/results/build.py           # rewrite every table.md, table.csv and docs/results.md
    python docs/results/build.py --check   # change nothing; exit 1 and name what is out of date

Each entry of ``SECTIONS`` is one question of docs/results.md: its arms (settings) and the run
folders of each (a glob, so a new seed drops in when its folder is committed), and the env steps
its curve table shows. For each, the builder writes ``docs/results/<key>/table.md`` (the curve:
return per arm at each env step; then one row per run) and ``table.csv`` (every evaluation step
of every arm), and copies ``table.md`` verbatim into docs/results.md between
``<!-- table: <key> -->`` and ``<!-- /table -->``. Nobody edits those regions by hand.

It reads only ``config.yaml`` and ``metrics.jsonl`` (the latter through
``lever_transfer.metrics.read_metrics``, as ``lever-transfer report`` does), so it needs no
environment and runs in a second. A run with no
evaluation yet is named under its table and left out of it. Numbers of runs whose folders were
never committed are not here: docs/results/log.md says which and why.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from lever_transfer.metrics import read_metrics

HERE = Path(__file__).resolve().parent          # docs/results
PAGE = HERE.parent / "results.md"
REGION = re.compile(r"(<!-- table: (?P<key>[\w./-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)
CSV_FIELDS = ("arm", "env_steps", "seeds", "n", "return_mean", "return_sd", "sd_across",
              "flops_mean", "cpu_hours_mean", "wall_hours_mean")


@dataclass(frozen=True)
class Arm:
    label: str
    runs: str  # a glob under docs/results/


@dataclass(frozen=True)
class Section:
    key: str                 # docs/results/<key>/table.md, and the marker's name
    arms: tuple[Arm, ...]
    steps: tuple[int, ...]   # env steps the curve table shows (the CSV has every evaluation);
                             # none: no curve table, only the runs (as for the 26 Atari games)


def _tens(last: int, every: int = 10_000) -> tuple[int, ...]:
    return tuple(range(every, last + 1, every))


def _atari_arms() -> tuple[Arm, ...]:
    """One arm per game with a committed run folder (``atari100k/runs/GAME-sSEED``), A-Z."""
    games = sorted({p.name.rsplit("-s", 1)[0] for p in (HERE / "atari100k/runs").glob("*-s*")})
    return tuple(Arm(game.replace("_", " ").title().replace(" ", ""), f"atari100k/runs/{game}-s*")
                 for game in games)


WALKER = "walker_walk-from-walker_stand-60k/runs"
DOMAIN = "domain-from-walker_stand-60k/runs"
SECTIONS = (
    Section("walker_walk-from-walker_stand-60k", (
        Arm("encoder frozen (`all`)", f"{WALKER}/full-all-ar4-s*"),
        Arm("conv layers frozen (`4`)", f"{WALKER}/full-4-ar4-s*"),
        Arm("scratch (SAC+CURL)", f"{WALKER}/scratch-ar4-s*")), _tens(100_000)),
    Section("walker_walk-from-walker_stand-60k/frozen-layers", (
        Arm("`all`", f"{WALKER}/full-all-ar4-s*"),
        Arm("`4`", f"{WALKER}/full-4-ar4-s*"),
        Arm("`3`", f"{WALKER}/full-3-ar4-s*"),
        Arm("`2`", f"{WALKER}/full-2-ar4-s*"),
        Arm("`1`", f"{WALKER}/full-1-ar4-s*")), _tens(100_000)),
    Section("walker_walk-source-length", (
        Arm("from `walker_stand-20k`", "walker_walk-source-length/runs/from20k-full-all-ar4-s*"),
        Arm("from `walker_stand-40340`",
            "walker_walk-source-length/runs/from40340-full-all-ar4-s*"),
        Arm("from `walker_stand-60k`", f"{WALKER}/full-all-ar4-s3")), _tens(100_000)),
    Section("walker_walk-source-length/drq", (
        Arm("from `walker_stand-drq-60k` (DrQ)",
            "walker_walk-source-length/runs/fromdrq60k-full-all-ar4-s*"),
        Arm("from `walker_stand-60k` (SAC+CURL)", f"{WALKER}/full-all-ar4-s*")), _tens(100_000)),
    Section("domain-from-walker_stand-60k/cheetah_run", (
        Arm("encoder frozen (`all`)", f"{DOMAIN}/cheetah_run-enc-all-ar4-s*"),
        Arm("conv layers frozen (`4`)", f"{DOMAIN}/cheetah_run-enc-4-ar4-s*"),
        Arm("scratch (SAC+CURL)", f"{DOMAIN}/cheetah_run-scratch-ar4-s*")), _tens(100_000)),
    Section("domain-from-walker_stand-60k/hopper_hop", (
        Arm("encoder frozen (`all`)", f"{DOMAIN}/hopper_hop-enc-all-ar4-s*"),
        Arm("conv layers frozen (`4`)", f"{DOMAIN}/hopper_hop-enc-4-ar4-s*"),
        Arm("scratch (SAC+CURL)", f"{DOMAIN}/hopper_hop-scratch-ar4-s*")), _tens(100_000)),
    Section("atari100k", _atari_arms(), ()),
    Section("dmc-multi/cheetah_run", (
        Arm("frozen `dmc-multi-atc-10k`", "dmc-multi/runs/cheetah_run-from-dmc-multi-atc-10k-s*"),
        Arm("frozen `walker_stand-60k`", f"{DOMAIN}/cheetah_run-enc-all-ar4-s*")), _tens(100_000)),
    Section("dmc-multi/hopper_hop", (
        Arm("frozen `dmc-multi-atc-10k`", "dmc-multi/runs/hopper_hop-from-dmc-multi-atc-10k-s*"),
        Arm("frozen `walker_stand-60k`", f"{DOMAIN}/hopper_hop-enc-all-ar4-s*")), _tens(100_000)),
    Section("dmc-multi/cartpole_swingup", (
        Arm("frozen `dmc-multi-atc-10k`",
            "dmc-multi/runs/cartpole_swingup-from-dmc-multi-atc-10k-s*"),
        Arm("convs frozen (`4`) `dmc-multi-atc-10k`",
            "dmc-multi/runs/cartpole_swingup-from-dmc-multi-atc-10k-freeze4-s*"),
        Arm("frozen `walker_stand-60k`", f"{DOMAIN}/cartpole_swingup-enc-all-ar8-s*")),
        _tens(100_000)),
    Section("dmc-multi/ball_in_cup_catch", (
        Arm("frozen `dmc-multi-atc-10k`",
            "dmc-multi/runs/ball_in_cup_catch-from-dmc-multi-atc-10k-s*"),), _tens(100_000)),
    Section("dmc-multi/reacher_easy", (
        Arm("frozen `dmc-multi-atc-10k`",
            "dmc-multi/runs/reacher_easy-from-dmc-multi-atc-10k-s*"),), _tens(100_000)),
    Section("bf16/cartpole_swingup", (
        Arm("float32", "bf16/runs/cartpole_swingup-fp32-s*"),
        Arm("bf16", "bf16/runs/cartpole_swingup-bf16-s*"),
        Arm("bf16, float32 latent", "bf16/runs/cartpole_swingup-bf16h-s*"),
        Arm("bf16, float32 latent and outputs", "bf16/runs/cartpole_swingup-bf16q-s*")),
        _tens(20_000, 5_000)),
    Section("bf16/walker_stand", (
        Arm("float32", "bf16/runs/walker_stand_curl-fp32-s*"),
        Arm("bf16", "bf16/runs/walker_stand_curl-bf16-s*"),
        Arm("bf16, float32 latent", "bf16/runs/walker_stand_curl-bf16h-s*"),
        Arm("bf16, float32 latent and outputs", "bf16/runs/walker_stand_curl-bf16q-s*")),
        _tens(20_000, 5_000)),
)


@dataclass(frozen=True)
class Run:
    name: str
    seed: int
    evals: tuple[dict, ...]      # the metrics rows of kind "eval", in order
    update_ms: float | None      # median over the run's training episodes (None: never updated)


def read_run(folder: Path) -> Run:
    config = yaml.safe_load((folder / "config.yaml").read_text())
    rows = list(read_metrics(folder / "metrics.jsonl"))
    updates = [r["update_ms"] for r in rows
               if r.get("kind") == "train" and r.get("update_ms") is not None]
    return Run(folder.name, int(config["seed"]),
               tuple(r for r in rows if r.get("kind") == "eval"),
               statistics.median(updates) if updates else None)


def arm_runs(arm: Arm) -> tuple[list[Run], list[str]]:
    """The arm's runs with an evaluation, by seed; and the names of those without one."""
    runs = [read_run(p) for p in sorted(HERE.glob(arm.runs)) if (p / "metrics.jsonl").is_file()]
    if not runs:
        raise SystemExit(f"error: no run folder matches {arm.runs} under {HERE}")
    runs.sort(key=lambda r: r.seed)
    return [r for r in runs if r.evals], [r.name for r in runs if not r.evals]


def at_step(run: Run, step: int) -> dict | None:
    """The run's evaluation at ``step`` env steps (within 1%: a resumed run of an old version
    evaluated at the first episode end after the step), else None."""
    return next((r for r in run.evals if abs(r["env_steps"] - step) <= 0.01 * step), None)


def point(runs: list[Run], step: int) -> dict | None:
    """Mean over the seeds evaluated at ``step``; sd across them, or across the episodes of the
    one evaluation when only one seed got there."""
    found = [(run, row) for run in runs if (row := at_step(run, step)) is not None]
    if not found:
        return None
    returns = [row["eval_return"] for _, row in found]
    one = len(found) == 1
    cpu = [row.get("cpu_s") for _, row in found]
    return {
        "env_steps": step, "seeds": " ".join(str(run.seed) for run, _ in found), "n": len(found),
        "return_mean": statistics.fmean(returns),
        "return_sd": found[0][1].get("eval_return_std", 0.0) if one else statistics.pstdev(returns),
        "sd_across": "episodes" if one else "seeds",
        "flops_mean": statistics.fmean(row["flops"] for _, row in found),
        "cpu_hours_mean": None if None in cpu else statistics.fmean(cpu) / 3600,
        "wall_hours_mean": statistics.fmean(row["wall_s"] for _, row in found) / 3600,
    }


def flops(value: float) -> str:
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def curve_table(section: Section, arms: list[list[Run]]) -> list[str]:
    if not section.steps:
        return []
    header = "| env steps | " + " | ".join(a.label for a in section.arms) + " |"
    lines = [header, "|---:|" + "---|" * len(arms)]
    for step in section.steps:
        cells = []
        for runs in arms:
            p = point(runs, step)
            cells.append("" if p is None else
                         f"{p['return_mean']:.1f} ± {p['return_sd']:.1f} ({p['n']})")
        if any(cells):
            lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
    return lines


def runs_table(section: Section, arms: list[list[Run]]) -> list[str]:
    lines = ["| arm | run folder | seed | last evaluation, env steps | return there | FLOPs there "
             "| CPU-hours there | median update ms |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for arm, runs in zip(section.arms, arms):
        for run in runs:
            last = run.evals[-1]
            cpu = last.get("cpu_s")
            update = "-" if run.update_ms is None else f"{run.update_ms:.0f}"
            lines.append(f"| {arm.label} | `{run.name}` | {run.seed} | {last['env_steps']:,} | "
                         f"{last['eval_return']:.1f} | {flops(last['flops'])} | "
                         f"{hours(None if cpu is None else cpu / 3600)} | {update} |")
    return lines


def build(section: Section) -> tuple[str, str]:
    """(table.md, table.csv) of one section."""
    arms, missing = [], []
    for arm in section.arms:
        runs, without = arm_runs(arm)
        arms.append(runs)
        missing += without
    lines = curve_table(section, arms)
    if lines:
        lines += ["", "Evaluation return, mean ± sd (seeds evaluated there); with one seed the sd "
                  "is across its evaluation episodes. Per run:", ""]
    lines += runs_table(section, arms)
    if missing:
        lines += ["", "No evaluation yet, so not in the table: "
                  + ", ".join(f"`{name}`" for name in missing) + "."]
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for arm, runs in zip(section.arms, arms):
        steps = sorted({row["env_steps"] for run in runs for row in run.evals})
        for step in steps:
            p = point(runs, step)
            if p is not None:
                writer.writerow({"arm": arm.label, **{k: _csv(v) for k, v in p.items()}})
    return "\n".join(lines) + "\n", out.getvalue()


def _csv(value: object) -> object:
    return f"{value:.6g}" if isinstance(value, float) else ("" if value is None else value)


def page(text: str, tables: dict[str, str]) -> str:
    """docs/results.md with every marked region replaced by its table."""
    seen = set()

    def fill(match: re.Match[str]) -> str:
        key = match["key"]
        if key not in tables:
            raise SystemExit(f"error: {PAGE.name} marks a table '{key}' that SECTIONS lacks")
        seen.add(key)
        return f"{match[1]}\n{tables[key]}\n{match[4]}"  # blank lines: markdown sees a table

    text = REGION.sub(fill, text)
    if unused := sorted(set(tables) - seen):
        raise SystemExit(f"error: {PAGE.name} has no region for {', '.join(unused)}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    check = parser.parse_args(argv).check
    outputs: dict[Path, str] = {}
    tables = {}
    for section in SECTIONS:
        md, table_csv = build(section)
        tables[section.key] = md
        outputs[HERE / section.key / "table.md"] = md
        outputs[HERE / section.key / "table.csv"] = table_csv
    outputs[PAGE] = page(PAGE.read_text(), tables)
    stale = [p for p, text in outputs.items() if not p.is_file() or p.read_text() != text]
    if check:
        for path in stale:
            print(f"out of date: {path.relative_to(HERE.parent.parent)}")
        if stale:
            print("run: python docs/results/build.py")
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(outputs[path])
        print(f"wrote {path.relative_to(HERE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
