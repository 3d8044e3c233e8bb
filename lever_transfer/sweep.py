"""``lever-transfer sweep``: one recipe over seeds (and tasks), then one report of them all.

Every run is a ``lever-transfer train`` subprocess (``pretrain`` when it publishes, ``finetune``
when it transfers a zoo encoder) with its own run directory
(``OUT/TASK-sSEED``), so runs are isolated (a crash kills one run, not the sweep) and a sweep
started again continues: a run directory with a checkpoint is resumed, a finished one (its
latest checkpoint at the run's last step) is skipped.
Locally, ``jobs`` runs go at once in a thread pool that waits on the subprocesses, each given
``cores / jobs`` OpenMP threads (unless OMP_NUM_THREADS is set); with
``backend="ray"`` each run is a Ray task on the cluster ``ray.init()`` connects to (Ray's own
scheduler places them by their CPU and GPU requests; ``RAY_ADDRESS`` picks the cluster, none
starts a Ray instance on this machine), and every node needs lever-transfer installed and the
same ``OUT`` path (a shared file system).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .errors import LeverError
from .run_dir import RunDir


@dataclass(frozen=True)
class SweepRun:
    task: str | None  # None: the recipe's own task
    seed: int
    run_dir: Path
    publish: bool = False  # a ``pretrain``: its snapshots go to the local hub as it saves them
    transfer_from: str | None = None  # a ``finetune`` from this encoder to ``task``

    @property
    def log(self) -> Path:
        return self.run_dir.with_suffix(".log")

    def command(self, recipe: str, options: list[str]) -> list[str]:
        """``train`` (``pretrain`` when it publishes, ``finetune --from`` when it transfers) for
        a new run, ``resume`` for one that has a checkpoint (a pretraining's resume publishes
        too)."""
        cli = [sys.executable, "-m", "lever_transfer.cli"]
        if RunDir(self.run_dir).holds_run():
            return [*cli, "resume", str(self.run_dir), "--no-progress"]
        if self.transfer_from:
            start = ["finetune", "--from", self.transfer_from, "--to", self.task or recipe]
        else:
            task = ["--set", f"task={self.task}"] if self.task else []
            start = ["pretrain" if self.publish else "train", recipe, *task]
        return [*cli, *start, "--seed", str(self.seed), *options, "--out", str(self.run_dir),
                "--no-progress"]


def parse_seeds(text: str) -> list[int]:
    """``0-4`` -> [0, 1, 2, 3, 4]; ``0,3,7`` and mixtures such as ``0-2,9`` work too."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            seeds += range(int(low), int(high or low) + 1)
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise LeverError(f"--seeds {text!r}: write distinct non-negative seeds such as 0-4 or "
                         f"0,3,7")
    return seeds


def plan(recipe_task: str, tasks: list[str] | None, seeds: list[int], out: Path,
         publish: bool = False, transfer_from: str | None = None) -> list[SweepRun]:
    """Every (task, seed) run of the sweep and its run directory; ``publish``: pretrainings
    that publish their snapshots (the hub's index lock keeps every entry of runs that publish
    at once); ``transfer_from``: finetunings from that encoder."""
    names: Sequence[str | None] = tasks or [None]
    return [SweepRun(task, seed, Path(out) / f"{(task or recipe_task).replace(':', '-')}-s{seed}",
                     publish, transfer_from)
            for task in names for seed in seeds]


def _run_local(command: list[str], log: Path, threads: int | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if threads is not None and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
    with open(log, "ab") as output:
        return subprocess.run(command, stdout=output, stderr=subprocess.STDOUT,
                              env=env).returncode


def threads_per_run(jobs: int) -> int | None:
    """Cores per run when several share the machine (torch's OpenMP threads of two processes
    on the same cores slow each other down many times over); None for one run at a time."""
    return max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None


def finished(run_dir: Path) -> bool:
    """Whether a run directory's latest checkpoint is at its last step."""
    run = RunDir(run_dir)
    step = run.latest_step()
    if step is None or not run.has_config():
        return False
    cfg = run.read_config()
    return step >= cfg.agent_steps(cfg.steps)


def run_sweep(recipe: str, runs: list[SweepRun], options: list[str], jobs: int = 1,
              backend: str = "local", say: Callable[[str], None] = print,
              cpus_per_run: int | None = None, gpus_per_run: float = 0.0) -> list[SweepRun]:
    """Run (or resume, or skip if finished) every run; returns the runs that failed.

    ``cpus_per_run``: OpenMP threads of each local run (default: the cores split over ``jobs``),
    or the CPUs Ray reserves for each run (default 1); ``gpus_per_run`` is Ray's alone."""
    todo = [run for run in runs if not finished(run.run_dir)]
    for run in runs:
        if run not in todo:
            say(f"{run.run_dir}: finished earlier, skipped")
    if backend == "ray":
        codes = _run_ray(recipe, todo, options, cpus_per_run or 1, gpus_per_run)
    elif backend == "local":
        if gpus_per_run:
            raise LeverError("--gpus-per-run is a Ray resource request: use it with "
                             "--backend ray (local runs see every GPU of the machine)")
        threads = cpus_per_run or threads_per_run(jobs)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            codes = list(pool.map(lambda run: _run_local(run.command(recipe, options),
                                                         run.log, threads), todo))
    else:
        raise LeverError(f"unknown backend {backend!r}: use local or ray")
    failed = []
    for run, code in zip(todo, codes):
        if code == 0 and finished(run.run_dir):
            say(f"{run.run_dir}: finished")
        else:
            failed.append(run)
            say(f"{run.run_dir}: failed (exit {code}); see {run.log}; run the sweep again to "
                f"resume it")
    return failed


def _run_on_ray_node(run: SweepRun, recipe: str, options: list[str], threads: int) -> int:
    """One run as a Ray task. The command is built here, on the node that runs it, so it uses
    that node's Python and, when Ray retries a task whose node died, resumes the checkpoint."""
    run.log.parent.mkdir(parents=True, exist_ok=True)
    with open(run.log, "a") as log:
        log.write(f"sweep: Ray task on node {socket.gethostname()}, {threads} CPU(s)\n")
    return _run_local(run.command(recipe, options), run.log, threads)


def _check_ray_address(address: str | None) -> None:
    """A wrong RAY_ADDRESS makes ``ray.init`` retry for minutes: fail at once instead."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (ValueError, OSError):
        raise LeverError(f"RAY_ADDRESS={address}: no Ray cluster answers there; start one with "
                         f"`ray start --head`, or unset RAY_ADDRESS for a Ray instance on this "
                         f"machine") from None


def _ray_hint() -> str:
    """What to try when ``ray.init`` fails: a cluster that ``ray start --head`` started (Ray 2.60
    and later) turns on token authentication and refuses a client without RAY_AUTH_MODE=token,
    which Ray reports only as a failed connection."""
    if os.environ.get("RAY_ADDRESS") and os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return ("a cluster started with `ray start --head` (Ray 2.60 and later) wants its token: "
                "set RAY_AUTH_MODE=token (the token comes from ~/.ray/auth_token or "
                "RAY_AUTH_TOKEN) and run again; else check RAY_ADDRESS, or use --backend local")
    return "check RAY_ADDRESS, or use --backend local"


def _run_ray(recipe: str, runs: list[SweepRun], options: list[str], cpus: int,
             gpus: float) -> list[int]:
    """Every run as a Ray task on the cluster that ``RAY_ADDRESS`` names (or a local Ray
    instance); Ray's scheduler places them by their CPU and GPU requests."""
    if not runs:  # every run finished earlier: no cluster needed
        return []
    try:
        import ray
    except ImportError:
        raise LeverError("--backend ray needs Ray: pip install 'lever-transfer[ray]' (and "
                         "lever-transfer on every node); or use --backend local") from None
    _check_ray_address(os.environ.get("RAY_ADDRESS"))
    started_here = not ray.is_initialized()
    try:
        ray.init(ignore_reinit_error=True, log_to_driver=False)
    except (ConnectionError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        raise LeverError(f"cannot start or reach Ray ({first_line}); {_ray_hint()}") from None
    try:
        task = ray.remote(num_cpus=cpus, num_gpus=gpus)(_run_on_ray_node)
        refs = [task.remote(run, recipe, options, cpus) for run in runs]
        codes = []
        for ref in refs:
            try:
                codes.append(ray.get(ref))
            except ray.exceptions.RayError:  # the task's node or worker died: a failed run
                codes.append(-1)
        return codes
    finally:
        if started_here:
            ray.shutdown()
