"""``lever-transfer report``: learning curves against env steps, FLOPs, wall and CPU hours; a table.

Runs are read from their run directories (their config and metrics, ``RunDir``) and grouped by
setting: runs whose configs differ only in the seed (and in keys that do not change what is
learned, ``NOT_THE_SETTING``) are seeds of one setting, drawn as their mean with a band of one
standard deviation across seeds (the paper's figures). Seeds are aligned by evaluation index (the
k-th evaluation of every seed), at the mean step and FLOPs of those evaluations; a setting's mean
stops at its shortest seed, and a seed that ran further goes on alone as a thin dashed line (so a
stopped seed does not hide how far the others got). The freeze point Tf is a dotted line in the
setting's colour. The summary table gives, per setting: seeds, final evaluation return, total
FLOPs (the final return's ± is across seeds, shown for two or more), the return at an equal
number of env steps (the last evaluation every setting reached, or ``at_env_steps``), FLOPs to
reach a return every setting reaches (or ``target_return``), the return reached within a FLOPs
budget every setting spent (or ``at_flops``; the paper's table 1 compares at 45T), peak replay
memory, wall time and CPU time (a run's CPU-hours, its environment worker's included; '-' for
runs logged before metrics had ``cpu_s``).

matplotlib runs with the Agg backend: no display needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import LeverError
from .files import write_atomic
from .registry import AGENTS, DEFAULT_AGENT
from .run_dir import CONFIG, METRICS, RunDir


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    evals: np.ndarray  # [n, 5]: env_steps, flops, eval_return, wall_s, cpu_s (nan if unlogged)
    freeze: tuple[float, ...] | None  # (env_steps, flops, wall_s, cpu_s) at Tf
    replay_bytes: int
    wall_s: float
    cpu_s: float | None  # None for runs logged before metrics had cpu_s


@dataclass
class Setting:
    """Runs of one config up to the seed."""

    label: str
    runs: list[Run] = field(default_factory=list)

    @property
    def _shared(self) -> int:
        """How many evaluations every seed has (the shortest seed's)."""
        return min(len(r.evals) for r in self.runs)

    def _shared_evals(self) -> np.ndarray:
        """[seeds, n, 5]: every seed's first n evaluations, n that of the shortest seed."""
        n = self._shared
        return np.stack([r.evals[:n] for r in self.runs])

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(env steps, FLOPs, mean return, std across seeds) over the shared evaluations."""
        stacked = self._shared_evals()
        mean = stacked.mean(axis=0)
        return mean[:, 0], mean[:, 1], mean[:, 2], stacked[:, :, 2].std(axis=0)

    def hours(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (wall-clock, CPU) hours of the runs at each shared evaluation (resumes do not
        count the time a run was stopped; CPU hours are nan for runs logged before cpu_s)."""
        mean = self._shared_evals().mean(axis=0)
        return mean[:, 3] / 3600, mean[:, 4] / 3600

    def beyond_shared(self) -> list[tuple[Run, np.ndarray]]:
        """Each seed that ran past the shortest one, with its own evaluations from the last
        shared one on ([m, 5]: the dashed line starts at that seed's point, not the mean's)."""
        n = self._shared
        return [(r, r.evals[n - 1:]) for r in self.runs if len(self.runs) > 1 and len(r.evals) > n]

    @property
    def freeze(self) -> tuple[float, ...] | None:
        points = [r.freeze for r in self.runs if r.freeze is not None]
        return tuple(np.mean(points, axis=0)) if points else None


def read_run(path: Path) -> Run:
    """One run directory, or a one-line error that says what is missing."""
    run = RunDir(path)
    if not run.has_config() or not run.metrics_path.is_file():
        raise LeverError(f"{run} is not a run directory ({CONFIG} and {METRICS} are "
                         f"written by lever-transfer train/finetune/pretrain)")
    config = run.read_config().to_dict()
    rows = run.metrics()
    evals = np.array([(r["env_steps"], r["flops"], r["eval_return"], r.get("wall_s", np.nan),
                       r.get("cpu_s", np.nan)) for r in rows if r.get("kind") == "eval"],
                     dtype=np.float64).reshape(-1, 5)
    if not len(evals):
        raise LeverError(f"{run} has no evaluation yet (evaluations are logged every "
                         f"eval_every steps); report it once it has one")
    freeze = next(((r["env_steps"], r["flops"], r.get("wall_s", np.nan), r.get("cpu_s", np.nan))
                   for r in rows if r.get("kind") == "freeze"), None)
    cpu = [r["cpu_s"] for r in rows if "cpu_s" in r]
    return Run(run.path, config, evals, freeze, max(r.get("replay_bytes", 0) for r in rows),
               max(r.get("wall_s", 0.0) for r in rows), max(cpu) if cpu else None)


def _label(config: dict[str, Any]) -> str:
    """What a setting is called in plots and tables; bf16 runs say so (float32 is the norm)."""
    return _method_label(config) + (" (bf16)" if config.get("precision") == "bf16" else "")


def _method_label(config: dict[str, Any]) -> str:
    algorithm = config.get("algorithm", DEFAULT_AGENT)
    agent = AGENTS[algorithm].baseline if algorithm in AGENTS else str(algorithm)
    if config.get("pretrained"):  # finetunes differ by transfer and frozen layers (figure 9(a))
        layers = config.get("freeze_layers", "all")
        plural = "s" * (str(layers) != "1")
        frozen = "encoder frozen" if layers == "all" else f"{layers} layer{plural} frozen"
        return f"{config['task']} from {config['pretrained']} ({config.get('transfer')}, {frozen})"
    if not config.get("lever", True):
        return f"{config['task']} {agent}"
    tf = config.get("freeze_at", {})
    unit, value = next(iter(tf.items())) if isinstance(tf, dict) and tf else ("", "?")
    return f"{config['task']} {agent}+LeVER (Tf {value} {unit.replace('_', ' ')})"


# Config keys that do not change what a run learns: runs differing only in these are seeds of
# one setting (a `pretrain` run's snapshots, a run's checkpoint spacing, its device or logging).
NOT_THE_SETTING = {"seed", "description", "paper", "snapshot_every", "checkpoint_every",
                   "checkpoint_minutes", "tensorboard", "compile", "device", "channels_last"}
# ... and, for a run that never freezes (a baseline), the keys of the freeze it never makes.
FREEZE_KEYS = {"freeze_at", "freeze_layers", "latent_augmentations", "latent_dtype"}


def setting_of(config: dict[str, Any]) -> str:
    """The part of a run's config that makes it a setting (its seed and bookkeeping aside)."""
    ignored = NOT_THE_SETTING
    if not config.get("lever", True) and not config.get("pretrained"):
        ignored = ignored | FREEZE_KEYS
    if config.get("precision", "auto") == "auto":  # a run records what auto resolved to; one
        config = {**config, "precision": "fp32"}   # logged before the setting ran in float32
    return yaml.safe_dump({k: v for k, v in config.items() if k not in ignored}, sort_keys=True)


def group_runs(runs: list[Run]) -> list[Setting]:
    """Settings in the order their first run was given; seeds of one config share a setting."""
    settings: dict[str, Setting] = {}
    for run in runs:
        key = setting_of(run.config)
        settings.setdefault(key, Setting(_label(run.config))).runs.append(run)
    labels = [s.label for s in settings.values()]
    for setting in settings.values():  # same label, different configs: say what differs
        if labels.count(setting.label) > 1:
            setting.label += f" [{setting.runs[0].path.name}]"
    return list(settings.values())


def plot(settings: list[Setting]):
    """Return against env steps, cumulative FLOPs, wall-clock hours and CPU-hours. CPU-hours
    are the cost on a machine shared with other jobs (wall-clock time then overstates it); runs
    logged before metrics had cpu_s are left off that panel."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, grid = plt.subplots(2, 2, figsize=(14, 8.8), constrained_layout=True)
    axes = grid.ravel()
    for index, setting in enumerate(settings):
        colour = f"C{index % 10}"
        steps, flops, mean, std = setting.curve()
        seeds = len(setting.runs)
        wall, cpu = setting.hours()
        alone = setting.beyond_shared()
        # (axis, x, which coordinate of the freeze point, its column in Run.evals, divisor into
        # the axis's unit)
        for axis, x, freeze_x, column, unit in (
                (axes[0], steps, 0, 0, 1), (axes[1], flops, 1, 1, 1),
                (axes[2], wall, 2, 3, 3600), (axes[3], cpu, 3, 4, 3600)):
            if np.isnan(x).any():
                continue
            axis.plot(x, mean, color=colour, marker="o", markersize=3,
                      label=f"{setting.label} ({seeds} seed{'s' * (seeds > 1)})")
            if seeds > 1:
                axis.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2)
            for run, evals in alone:
                seed_x = evals[:, column] / unit
                if not np.isnan(seed_x).any():
                    axis.plot(seed_x, evals[:, 2], color=colour, linestyle="--", linewidth=1,
                              label=f"  seed {run.config.get('seed')} alone past "
                                    f"{evals[0, 0]:,.0f} env steps")
            if setting.freeze is not None and not np.isnan(setting.freeze[freeze_x]):
                axis.axvline(setting.freeze[freeze_x] / unit, color=colour, linestyle=":",
                             linewidth=1.5)
    axes[0].set_xlabel("environment steps")
    axes[1].set_xlabel("cumulative FLOPs (appendix B)")
    axes[2].set_xlabel("wall-clock hours (compare only runs from one machine, alone on it)")
    axes[3].set_xlabel("CPU-hours (environment worker included; fair on a shared machine)")
    for axis in axes:
        axis.set_ylabel("evaluation return")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    axes[1].set_title("dotted: freeze point Tf", fontsize=9)
    return figure


def _first_reaching(x: np.ndarray, y: np.ndarray, target: float) -> float | None:
    reached = np.flatnonzero(y >= target)
    return float(x[reached[0]]) if reached.size else None


def _at(x: np.ndarray, y: np.ndarray, budget: float) -> float | None:
    within = np.flatnonzero(x <= budget)
    return float(y[within[-1]]) if within.size else None


def _near(steps: np.ndarray, y: np.ndarray, point: float) -> str:
    """The return at the evaluation nearest ``point`` env steps, if one lies within half an
    evaluation interval of it (a resume can shift evaluations off round numbers: the step is
    then shown), else '-'."""
    interval = float(np.median(np.diff(steps))) if len(steps) > 1 else float(steps[0])
    nearest = int(np.argmin(np.abs(steps - point)))
    if abs(steps[nearest] - point) > interval / 2:
        return "-"
    shifted = abs(steps[nearest] - point) > 0.005 * point
    return f"{y[nearest]:.1f}" + (f" (at {steps[nearest]:,.0f})" if shifted else "")


def summary(settings: list[Setting], target_return: float | None = None,
            at_flops: float | None = None, at_env_steps: float | None = None) -> str:
    """The Markdown table (and how its three comparison columns were chosen)."""
    curves = [s.curve() for s in settings]
    if target_return is None:
        target_return = min(float(mean.max()) for _, _, mean, _ in curves)
    if at_flops is None:
        at_flops = min(float(flops[-1]) for _, flops, _, _ in curves)
    if at_env_steps is None:  # the last evaluation every setting reached, in whole thousands
        reached = min(float(steps[-1]) for steps, _, _, _ in curves)
        at_env_steps = reached // 1000 * 1000 or reached
    lines = [f"| setting | seeds | final return | total FLOPs | return at {at_env_steps:,.0f} "
             f"env steps | FLOPs to reach {target_return:.1f} | return within {at_flops:.3g} "
             f"FLOPs | peak replay MB | wall h | CPU h |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for setting, (steps, flops, mean, std) in zip(settings, curves):
        reach = _first_reaching(flops, mean, target_return)
        within = _at(flops, mean, at_flops)
        spread = f" ± {std[-1]:.1f}" if len(setting.runs) > 1 else ""  # across seeds only
        lines.append(
            f"| {setting.label} | {len(setting.runs)} | {mean[-1]:.1f}{spread} "
            f"(at {steps[-1]:,.0f} env steps) | {flops[-1]:.3g} | "
            f"{_near(steps, mean, at_env_steps)} | "
            f"{'not reached' if reach is None else f'{reach:.3g}'} | "
            f"{'-' if within is None else f'{within:.1f}'} | "
            f"{max(r.replay_bytes for r in setting.runs) / 1e6:.1f} | "
            f"{np.mean([r.wall_s for r in setting.runs]) / 3600:.2f} | {_cpu_hours(setting)} |")
    return "\n".join(lines)


def _cpu_hours(setting: Setting) -> str:
    """Mean CPU-hours over the seeds ('-' if a run predates the cpu_s column): on a machine
    that runs other jobs too, the cost that wall-clock hours overstate."""
    cpu = [r.cpu_s for r in setting.runs if r.cpu_s is not None]
    return f"{np.mean(cpu) / 3600:.2f}" if len(cpu) == len(setting.runs) else "-"


def write_report(run_dirs: list[Path], out: Path, target_return: float | None = None,
                 at_flops: float | None = None, at_env_steps: float | None = None
                 ) -> tuple[Path, Path]:
    """``out/report.png`` and ``out/report.md`` for the given runs."""
    if not run_dirs:
        raise LeverError("give at least one run directory: lever-transfer report RUN_DIR...")
    settings = group_runs([read_run(Path(d)) for d in run_dirs])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figure = plot(settings)
    png = out / "report.png"
    tmp = out / ".report.png.tmp"
    figure.savefig(tmp, dpi=120, format="png")
    tmp.replace(png)
    runs = "\n".join(f"- `{r.path}` (seed {r.config.get('seed')}, evaluated to "
                     f"{r.evals[-1, 0]:,.0f} env steps)" for s in settings for r in s.runs)
    text = (f"# lever-transfer report\n\n![learning curves](report.png)\n\n"
            f"Curves: mean evaluation return over seeds (band: one standard deviation across "
            f"seeds), seeds aligned by evaluation index up to the shortest seed; dashed: a seed "
            f"that ran further, alone; dotted lines: the freeze point Tf.\n\n"
            f"{summary(settings, target_return, at_flops, at_env_steps)}\n\nRuns:\n\n{runs}\n")
    md = out / "report.md"
    write_atomic(md, text.encode())
    return png, md
