"""``lever-transfer benchmark atari100k``: our Atari-100k scores beside data-efficient Rainbow's.

Per game: our score (the final evaluation of each run, a mean over its evaluation episodes, then
the mean over seeds), data-efficient Rainbow's published score (van Hasselt et al. 2019), the
random and human scores, and human-normalised scores, HNS = (score - random) / (human - random).
Aggregates follow Agarwal et al. 2021 with their library, rliable: IQM, median, mean and
optimality gap of the HNS with stratified-bootstrap 95% intervals, for ours and for the published
per-game means computed the same way (one "run" per game), over the games we ran. The table is
written as markdown and CSV, the aggregates as rliable's interval plot, as RL Zoo generates its
benchmark.md.
"""

from __future__ import annotations

import csv
import functools
import io
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .errors import LeverError
from .files import write_atomic

BOOTSTRAP_REPS = 2000
METRICS = ("IQM", "Median", "Mean", "Optimality gap")


@dataclass(frozen=True)
class Reference:
    """A game's published figures: random and human play, data-efficient Rainbow at 100K."""

    game: str  # as the papers name it, e.g. BankHeist
    task: str  # ours, e.g. atari:bank_heist
    random: float
    human: float
    der: float

    def normalise(self, score: float) -> float:
        return (score - self.random) / (self.human - self.random)


@functools.lru_cache(maxsize=1)
def references() -> dict[str, Reference]:
    """task -> the 26 Atari-100k games' reference scores (``data/atari100k.csv``)."""
    text = resources.files("lever_transfer").joinpath("data/atari100k.csv").read_text("utf-8")
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    return {row["task"]: Reference(row["game"], row["task"], float(row["random"]),
                                   float(row["human"]), float(row["der"])) for row in rows}


def human_normalised(task: str, score: float) -> float | None:
    """HNS of ``score`` on an Atari-100k game; None for any other task."""
    reference = references().get(task)
    return None if reference is None else reference.normalise(score)


def run_folders(paths: list[Path]) -> list[Path]:
    """The run directories among ``paths``, a folder of runs (a sweep's) standing for its runs."""
    from .run_dir import RunDir

    found: list[Path] = []
    for path in map(Path, paths):
        if RunDir(path).has_config() or not path.is_dir():
            found.append(path)  # (read_run says what is wrong with one that is not a run)
        else:
            found += sorted(p for p in path.iterdir() if RunDir(p).has_config())
    if not found:
        raise LeverError(f"no run directories in {', '.join(map(str, paths))}")
    return found


def final_scores(run_dirs: list[Path]) -> dict[str, list[float]]:
    """task -> the final evaluation return of each run on it (one per seed), in the order given.
    A run that is not an Atari-100k game, or has no evaluation at its last step, is refused."""
    from .report import read_run

    scores: dict[str, list[float]] = {}
    for path in run_dirs:
        run = read_run(path)
        task = run.config["task"]
        if task not in references():
            raise LeverError(f"{path} trained {task}, not one of the 26 Atari-100k games; "
                             f"benchmark only those runs")
        last = run.evals[-1]
        scores.setdefault(task, []).append(float(last[2]))
    return scores


def score_matrix(per_game: Mapping[str, list[float]], tasks: list[str]) -> np.ndarray:
    """[runs, games] HNS as rliable takes it; games with fewer seeds repeat their mean (rliable
    needs a rectangle), so each game weighs the same."""
    runs = max(len(per_game[t]) for t in tasks)
    matrix = np.empty((runs, len(tasks)))
    for j, task in enumerate(tasks):
        hns = [references()[task].normalise(s) for s in per_game[task]]
        matrix[:, j] = hns + [float(np.mean(hns))] * (runs - len(hns))
    return matrix


def aggregate_functions() -> dict[str, Callable[[np.ndarray], Any]]:
    from rliable import metrics

    return {"IQM": metrics.aggregate_iqm, "Median": metrics.aggregate_median,
            "Mean": metrics.aggregate_mean, "Optimality gap": metrics.aggregate_optimality_gap}


def aggregates(matrices: Mapping[str, np.ndarray], reps: int = BOOTSTRAP_REPS, seed: int = 0
               ) -> dict[str, dict[str, tuple[float, float, float]]]:
    """method -> metric -> (point, low, high): rliable's point estimates and stratified-bootstrap
    95% intervals of the HNS aggregates."""
    try:
        from rliable import library
    except ImportError:
        raise LeverError("the benchmark's aggregates need rliable: pip install "
                         "'lever-transfer[bench]'") from None

    functions = aggregate_functions()

    def all_metrics(matrix: np.ndarray) -> np.ndarray:
        return np.array([functions[m](matrix) for m in METRICS])

    with warnings.catch_warnings():  # rliable hands arch a RandomState, which arch deprecates
        warnings.simplefilter("ignore", FutureWarning)
        points, intervals = library.get_interval_estimates(
            dict(matrices), all_metrics, reps=reps, random_state=np.random.RandomState(seed))
    return {method: {metric: (float(points[method][i]), float(intervals[method][0, i]),
                              float(intervals[method][1, i]))
                     for i, metric in enumerate(METRICS)}
            for method in matrices}


def table_rows(per_game: Mapping[str, list[float]]) -> list[dict[str, Any]]:
    """One row per game we ran, in the papers' order."""
    rows = []
    for task, reference in references().items():
        if task not in per_game:
            continue
        ours = float(np.mean(per_game[task]))
        rows.append({"game": reference.game, "seeds": len(per_game[task]), "ours": ours,
                     "ours_std": float(np.std(per_game[task])), "der": reference.der,
                     "random": reference.random, "human": reference.human,
                     "ours_hns": reference.normalise(ours),
                     "der_hns": reference.normalise(reference.der)})
    return rows


def write_benchmark(run_dirs: list[Path], out: Path, reps: int = BOOTSTRAP_REPS
                    ) -> tuple[Path, Path, Path]:
    """benchmark.md, benchmark.csv and aggregates.png in ``out``."""
    per_game = final_scores(run_folders(run_dirs))
    tasks = [t for t in references() if t in per_game]
    rows = table_rows(per_game)
    ours = score_matrix(per_game, tasks)
    published = np.array([[references()[t].normalise(references()[t].der) for t in tasks]])
    results = aggregates({"lever-transfer": ours, "DER (published)": published}, reps)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "benchmark.csv", buffer.getvalue().encode())
    write_atomic(out / "benchmark.md", markdown(rows, results, len(tasks)).encode())
    png = out / "aggregates.png"
    plot_aggregates(results, png)
    return out / "benchmark.md", out / "benchmark.csv", png


def markdown(rows: list[dict[str, Any]], results: Mapping[str, Mapping[str, tuple]],
             games: int) -> str:
    lines = [f"Atari-100k over {games} game{'s' * (games != 1)}: our final evaluation (mean over "
             f"its episodes, then over seeds) against data-efficient Rainbow's published score.",
             "", "| game | seeds | ours | DER | random | human | ours HNS | DER HNS |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spread = f" ± {r['ours_std']:.1f}" if r["seeds"] > 1 else ""
        lines.append(f"| {r['game']} | {r['seeds']} | {r['ours']:.1f}{spread} | {r['der']:.1f} | "
                     f"{r['random']:.1f} | {r['human']:.1f} | {r['ours_hns']:.3f} | "
                     f"{r['der_hns']:.3f} |")
    lines += ["", f"Aggregates of the human-normalised scores over these {games} "
              f"game{'s' * (games != 1)} (rliable, "
              f"stratified bootstrap, 95% intervals; lower is better for the optimality gap):",
              "", "| method | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for method, values in results.items():
        cells = [f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in values.values()]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_aggregates(results: Mapping[str, Mapping[str, tuple]], path: Path) -> None:
    """rliable's interval-estimate plot of the four aggregates, one row per method."""
    import matplotlib

    matplotlib.use("Agg")
    from rliable import plot_utils

    methods = list(results)
    points = {m: np.array([results[m][k][0] for k in METRICS]) for m in methods}
    intervals = {m: np.array([[results[m][k][1] for k in METRICS],
                              [results[m][k][2] for k in METRICS]]) for m in methods}
    figure, _ = plot_utils.plot_interval_estimates(points, intervals, metric_names=list(METRICS),
                                                   algorithms=methods,
                                                   xlabel="Human-normalised score",
                                                   row_height=0.6, xlabel_y_coordinate=-0.35)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
