"""The training loop: env -> observation -> agent -> replay -> update -> metrics and checkpoints.

LeVER's switch lives here. At agent step Tf the agent freezes its encoder layers, the pixel replay
is re-encoded in place into a latent replay whose capacity grows by the ratio of real bytes per
entry (section 4.2), and from then on the replay stores latents and updates touch only the heads.
If the latent at the chosen layer is not smaller than the pixels it replaces (conv features),
pixels are kept and the frozen layers run without gradients.

A DMC environment runs in its own process: the loop sends an action, runs the update while the
worker renders, then collects the observation (an Atari step is cheap and runs in place).
Checkpoints are written at episode ends (Atari: at game ends, as the emulator's mid-game state is
not saved), so a resumed run starts a fresh episode exactly where the original run would have,
and logs the same figures. One loop serves both agents: SAC+CURL on DMC with continuous
actions, data-efficient Rainbow on Atari with discrete ones (stored as their index), n-step
returns, clipped rewards in the replay and one episode per life.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
import yaml

from .agents import make_agent
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, write_atomic
from .config import Config, is_atari_task
from .envs import action_size, evaluation_env, training_env
from .errors import LeverError
from .evaluate import evaluate
from .flops import CachedFlops, FlopCounter
from .metrics import MetricsLog
from .package import EncoderPackage, agent_tensors, write_package
from .replay import (
    LatentReplay,
    PixelReplay,
    capacity_from_memory,
    convert_to_latent,
    grown_capacity,
)
from .replay.latent import latent_entry_bytes
from .replay.pixel import pixel_entry_bytes
from .replay.priority import TREE_BYTES_PER_SLOT
from .runtime import keep_freed_memory

DMC_EPISODE_ENV_STEPS = 1000  # every DMC task ends by its 1000-step time limit
# what stops a run cleanly (a checkpoint first): Ctrl-C, a closed terminal, a shutdown or `kill`
STOP_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


@dataclass
class Counters:
    """Everything about progress that a resume must restore."""

    agent_steps: int = 0
    episodes: int = 0
    flops: int = 0
    wall_s: float = 0.0
    next_eval: int = 0
    next_checkpoint: int = 0
    next_snapshot: int = 0


def _next_due(due: int, every: int, now: int) -> int:
    """The first multiple-of-``every`` step after ``now`` on the schedule that ``due`` is on."""
    while due <= now:
        due += every
    return due


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LeverError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


class Trainer:
    """One run directory: config.yaml, metrics.jsonl, checkpoints/, encoder/."""

    def __init__(self, cfg: Config, run_dir: Path, progress: bool = True,
                 say: Callable[[str], None] = print):
        self.cfg, self.run_dir, self.progress, self.say = cfg, Path(run_dir), progress, say
        self.device = resolve_device(cfg.device)
        keep_freed_memory()
        self.ar = cfg.action_repeat
        self.total = cfg.steps.to_agent_steps(self.ar)
        self.init_steps = cfg.init_steps.to_agent_steps(self.ar)
        # Tf; a finetune freezes its pretrained layers before the first step
        self.freeze_step = (0 if cfg.pretrained else
                            cfg.freeze_at.to_agent_steps(self.ar) if cfg.lever else None)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.env = training_env(cfg)
        obs_shape = tuple(self.env.observation_space.shape)
        self.action_space = self.env.action_space
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        # width of an action in the replay: a discrete action is stored as its index
        self.action_dim = 1 if self.discrete else int(self.action_space.shape[0])
        self.action_size = action_size(self.action_space)  # what the heads output
        self._new_game = True  # Atari continues a game after a lost life
        try:
            self.agent = make_agent(cfg, obs_shape, self.action_space, self.device)
            self.agent.encoder.resolve_layers(cfg.freeze_layers)  # refuse before training
        except BaseException:
            self.env.close()
            raise
        self.frame_shape = (obs_shape[0] // cfg.frame_stack, *obs_shape[1:])
        self.pixel_entry_bytes = pixel_entry_bytes(self.frame_shape, self.action_dim)
        self.replay: PixelReplay | LatentReplay = PixelReplay(
            self._pixel_capacity(), self.frame_shape, cfg.frame_stack, self.action_dim,
            prioritized=cfg.prioritized_replay)
        self.snapshot_every = (cfg.snapshot_every.to_agent_steps(self.ar)
                               if cfg.snapshot_every is not None else None)
        self.counters = Counters(next_eval=cfg.eval_every.to_agent_steps(self.ar),
                                 next_checkpoint=cfg.checkpoint_every.to_agent_steps(self.ar),
                                 next_snapshot=self.snapshot_every or 0)
        self.on_snapshot: Callable[[Path], None] | None = None
        self.update_flops = CachedFlops()
        self._eval_env: Any = None
        self._stop = False
        self._update_metrics: dict[str, list[float]] = {}  # this episode's losses, per name

    # ------------------------------------------------------------------ sizes
    def _entries_for(self, agent_steps: int) -> int:
        """Replay entries that hold ``agent_steps`` transitions: one more per episode.

        Atari episodes have no fixed length: table 5's "number of training steps" is used as is.
        """
        if is_atari_task(self.cfg.task):
            return agent_steps + 1
        episode = math.ceil(DMC_EPISODE_ENV_STEPS / self.ar)
        return agent_steps + math.ceil(agent_steps / episode) + 1

    def _pixel_capacity(self) -> int:
        cfg = self.cfg
        if cfg.replay_memory is not None:  # a priority tree counts against the budget too
            tree = TREE_BYTES_PER_SLOT if cfg.prioritized_replay else 0
            return capacity_from_memory(cfg.replay_memory_bytes, self.pixel_entry_bytes + tree,
                                        cfg.batch_size)
        if cfg.replay_capacity is not None:
            return cfg.replay_capacity
        return self._entries_for(self.total)

    def latent_plan(self) -> tuple[int, tuple[int, ...], int, bool]:
        """(frozen layers, latent shape (K, N, *feature), bytes per latent entry, use latents)."""
        n = self.agent.encoder.resolve_layers(self.cfg.freeze_layers)
        networks, feature = self.agent.latent_spec(n) if n else (1, ())
        shape = (self.cfg.latent_augmentations, networks, *feature)
        latent_bytes = latent_entry_bytes(shape, self.action_dim, np.dtype(self.cfg.latent_dtype))
        return n, shape, latent_bytes, n > 0 and latent_bytes < self.pixel_entry_bytes

    def header(self) -> str:
        cfg, c = self.cfg, self.counters
        lines = [f"lever-transfer: {cfg.task} | device {self.device} | seed {cfg.seed} | "
                 f"{self.total} agent steps = {self.total * self.ar} env steps "
                 f"(action repeat {self.ar})",
                 f"replay: {self.replay.capacity} entries x {self.replay.bytes_per_entry} B "
                 f"({type(self.replay).__name__})"]
        if self.freeze_step is None:
            baseline = "Rainbow" if cfg.algorithm == "rainbow" else "CURL"
            lines.append(f"LeVER off: {baseline} baseline, the encoder trains throughout")
        else:
            n, shape, latent_bytes, use = self.latent_plan()
            when = f"Tf = {self.freeze_step} agent steps = {self.freeze_step * self.ar} env steps"
            if cfg.pretrained:
                when = (f"finetune from {cfg.pretrained} (transfer {cfg.transfer}: "
                        f"{'encoder and heads' if cfg.transfer == 'full' else 'encoder, new heads'}"
                        f"), frozen from step 0")
            if use:
                lines.append(f"LeVER: {when}; freeze {n}/{self.agent.num_layers} encoder layers, "
                             f"then latent replay {shape} {cfg.latent_dtype} = {latent_bytes} B "
                             f"per entry vs {self.pixel_entry_bytes} B of pixels")
            else:
                lines.append(f"LeVER: {when}; freeze {n}/{self.agent.num_layers} layers; the latent "
                             f"{shape} = {latent_bytes} B is not smaller than the pixels "
                             f"({self.pixel_entry_bytes} B): keeping pixels, frozen layers run "
                             f"without gradients")
        if c.agent_steps:
            lines.append(f"resuming at agent step {c.agent_steps} (episode {c.episodes})")
        return "\n".join(lines)

    # ------------------------------------------------------------------ LeVER's switch
    def freeze(self) -> dict[str, Any]:
        """Freeze the encoder; convert the replay to latents if they are smaller."""
        n, shape, latent_bytes, use = self.latent_plan()
        self.agent.freeze(n)
        row: dict[str, Any] = {"kind": "freeze", "frozen_layers": n, "latent_replay": use,
                               "capacity_before": self.replay.capacity,
                               "transitions_before": len(self.replay)}
        start = time.perf_counter()
        if use and isinstance(self.replay, PixelReplay):
            remaining = self._entries_for(max(0, self.total - self.counters.agent_steps))
            tree = TREE_BYTES_PER_SLOT if self.replay.prioritized else 0
            capacity = grown_capacity(self.replay.capacity, self.replay.bytes_per_entry + tree,
                                      latent_bytes + tree, max_entries=len(self.replay) + remaining)
            with FlopCounter() as counter:
                self.replay = convert_to_latent(
                    self.replay, lambda stacks: self.agent.encode_latents(stacks, shape[0]),
                    shape, capacity, np.dtype(self.cfg.latent_dtype))
            self.counters.flops += counter.total
            row["conversion_flops"] = counter.total
        row.update(capacity_after=self.replay.capacity, transitions_after=len(self.replay),
                   conversion_s=round(time.perf_counter() - start, 3))
        self.save_encoder()
        return row

    def save_encoder(self) -> Path:
        """The run's encoder (and heads) as a zoo package in ``RUN_DIR/encoder``."""
        from .card import model_card
        from .zoo import package_config

        c = self.counters
        config = package_config(self.cfg, self.action_size, agent_steps=c.agent_steps,
                                flops=c.flops, eval_return=None, eval_return_std=None,
                                wall_s=round(c.wall_s + self._elapsed(), 1), with_heads=True)
        config["frozen_layers"] = self.agent.frozen_layers
        tensors = agent_tensors(self.agent.state_dict(), self.agent.num_layers, with_heads=True)
        name = f"{self.cfg.task.removeprefix('atari:')}-run-encoder"
        return write_package(self.run_dir / "encoder", tensors, config,
                             lambda final: model_card(name, final))

    def load_pretrained(self, package: EncoderPackage) -> None:
        """Start from a zoo encoder: its observation spec must fit, its weights load strictly."""
        from .transfer import load_into_agent

        load_into_agent(self.agent, package, self.cfg, self.action_size)

    # ------------------------------------------------------------------ loop
    def _store(self, action: np.ndarray | None, reward: float, terminated: bool,
               obs: np.ndarray) -> None:
        """Add an observation to the replay: its pixels, or its K augmented latents."""
        if isinstance(self.replay, LatentReplay):
            item, flops = self.update_flops.run("store", lambda: self.agent.encode_latents(
                obs[None], self.cfg.latent_augmentations)[0])
            self.counters.flops += flops  # the EKN term of appendix B
        else:
            item = obs
        self._check_finite({"reward": float(reward)}, "the environment's reward")
        if self.cfg.reward_clip is not None:
            reward = float(np.clip(reward, -self.cfg.reward_clip, self.cfg.reward_clip))
        if action is None:
            self.replay.add_reset(item)
        else:
            self.replay.add_step(action, reward, terminated, item)

    def _update(self) -> float:
        """One gradient step (overlapping the worker's rendering); returns its milliseconds."""
        start = time.perf_counter()
        step = self.counters.agent_steps
        cfg = self.cfg
        # prioritized replay: importance exponent beta annealed from priority_weight to 1
        progress = (step - self.init_steps) / max(1, self.total - self.init_steps)
        beta = cfg.priority_weight + (1 - cfg.priority_weight) * min(1.0, max(0.0, progress))
        batch = self.replay.sample(cfg.batch_size, self.rng, n_step=cfg.multi_step,
                                   gamma=cfg.discount, beta=beta)
        actor = step % cfg.actor_update_freq == 0
        kind = f"{type(self.replay).__name__}-{self.agent.frozen_layers}-{actor}"
        metrics, flops = self.update_flops.run(kind, lambda: self.agent.update(batch, step))
        self._check_finite(metrics, "the update's loss")
        for name, value in metrics.items():  # averaged into the episode's metrics row
            if isinstance(value, float):
                self._update_metrics.setdefault(name, []).append(value)
        if batch.ids is not None:
            self.replay.update_priorities(batch.ids, metrics["sample_loss"],
                                          cfg.priority_exponent)
        self.counters.flops += flops
        return (time.perf_counter() - start) * 1000

    def _check_finite(self, values: dict[str, Any], what: str) -> None:
        """Stop at the first NaN or infinity instead of training on: no checkpoint is written
        after it, so the last one (before the divergence) is what ``resume`` continues from."""
        bad = {k: v for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            last = latest_checkpoint(self.run_dir / "checkpoints")
            where = (f"the last checkpoint ({last.name}) is from before it: resume from it with a "
                     f"lower learning rate, e.g. lever-transfer resume {self.run_dir} --set "
                     f"critic_lr=..." if last else "no checkpoint was written yet")
            raise LeverError(f"training stopped at agent step {self.counters.agent_steps}: "
                             f"{what} is not finite ({', '.join(f'{k}={v}' for k, v in bad.items())})"
                             f"; {where}")

    def _episode_seed(self) -> int:
        return self.cfg.seed * 1_000_003 + self.counters.episodes

    def run_episode(self, bar: Any) -> dict[str, Any]:
        cfg, c = self.cfg, self.counters
        obs, _ = self.env.reset(seed=self._episode_seed() if self._new_game else None)
        self._store(None, 0.0, False, obs)
        episode_return, update_ms, done = 0.0, [], False
        self._update_metrics = {}
        while not done and c.agent_steps < self.total and not self._stop:
            if self.freeze_step is not None and c.agent_steps == self.freeze_step \
                    and self.agent.frozen_layers == 0:
                self.log(self.freeze())
            if c.agent_steps < self.init_steps:
                action = (int(self.rng.integers(self.action_space.n)) if self.discrete else
                          self.rng.uniform(-1, 1, self.action_dim).astype(np.float32))
            else:
                action = self.agent.act(obs, sample=True)
            self.env.step_async(action)
            if c.agent_steps >= self.init_steps and len(self.replay) >= cfg.batch_size:
                for _ in range(cfg.updates_per_step):
                    update_ms.append(self._update())
            obs, reward, terminated, truncated, info = self.env.step_wait()
            self._store(action, reward, terminated, obs)
            episode_return += reward
            c.agent_steps += 1
            done = terminated or truncated
            self._new_game = info.get("game_over", True) or truncated
            bar.update(1)
        c.episodes += 1
        return {"kind": "train", "episode": c.episodes, "episode_return": episode_return,
                "update_ms": float(np.mean(update_ms)) if update_ms else None,
                "interrupted": not done and self._stop,
                **{name: float(np.mean(values)) for name, values in self._update_metrics.items()}}

    def evaluate(self, episodes: int) -> tuple[float, float]:
        """Mean and std of the evaluation policy's return (``evaluate.py``)."""
        if self._eval_env is None:
            self._eval_env = evaluation_env(self.cfg)
        result = evaluate(self.agent, self._eval_env, episodes, self.cfg.seed)
        return result.mean, result.std

    def log(self, row: dict[str, Any]) -> None:
        c = self.counters
        row = {"env_steps": c.agent_steps * self.ar, "agent_steps": c.agent_steps,
               "flops": c.flops, "replay_bytes": self.replay.nbytes,
               "replay_capacity": self.replay.capacity, "replay_size": len(self.replay),
               "phase": self.phase, "wall_s": round(c.wall_s + self._elapsed(), 2), **row}
        self.metrics.write(row)

    @property
    def phase(self) -> str:
        return "latents" if isinstance(self.replay, LatentReplay) else (
            "frozen-pixels" if self.agent.frozen_layers else "pixels")

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def run(self) -> Path:
        """Train to the end (or until SIGINT), checkpointing as configured."""
        from tqdm.auto import tqdm

        write_atomic(self.run_dir / "config.yaml",
                     yaml.safe_dump(self.cfg.to_dict(), sort_keys=False).encode())
        stale = self.run_dir / "metrics.jsonl"
        if latest_checkpoint(self.run_dir / "checkpoints") is None and stale.exists():
            stale.unlink()  # rows of an attempt killed before its first checkpoint
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", self.run_dir / "tensorboard"
                                  if self.cfg.tensorboard else None)
        self._t0 = time.perf_counter()
        self.say(self.header())
        c = self.counters
        if self.freeze_step == 0 and not self.agent.frozen_layers:
            self.log(self.freeze())
        previous = {sig: signal.signal(sig, self._on_stop_signal) for sig in STOP_SIGNALS}
        self._last_checkpoint = time.monotonic()
        bar = tqdm(total=self.total, initial=c.agent_steps, unit="step", dynamic_ncols=True,
                   disable=not self.progress, mininterval=1.0)
        try:
            while c.agent_steps < self.total and not self._stop:
                row = self.run_episode(bar)
                self.log(row)
                self._maybe_eval_and_checkpoint(bar, row)
            self.checkpoint()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            bar.close()
            self.close()
        return self.run_dir

    def _maybe_eval_and_checkpoint(self, bar: Any, row: dict[str, Any]) -> None:
        c, cfg = self.counters, self.cfg
        postfix = {"ret": f"{row['episode_return']:.0f}", "FLOPs": f"{c.flops:.2e}",
                   "sps": f"{c.agent_steps / max(c.wall_s + self._elapsed(), 1e-9):.1f}",
                   "Tf": ("off" if self.freeze_step is None else
                          "frozen" if self.agent.frozen_layers else str(self.freeze_step))}
        snapshot_due = self.snapshot_every is not None and c.agent_steps >= c.next_snapshot
        if c.agent_steps >= c.next_eval or c.agent_steps >= self.total or snapshot_due:
            mean, std = self.evaluate(cfg.eval_episodes)
            self.log({"kind": "eval", "eval_return": mean, "eval_return_std": std})
            bar.write(f"eval at {c.agent_steps * self.ar} env steps: {mean:.1f} ± {std:.1f}")
            c.next_eval = _next_due(c.next_eval, cfg.eval_every.to_agent_steps(self.ar),
                                    c.agent_steps)
            postfix["eval"] = f"{mean:.0f}"
        bar.set_postfix(postfix, refresh=False)
        if snapshot_due:  # the evaluation above is the snapshot's
            path = self.snapshot(mean, std)
            bar.write(f"snapshot at {c.agent_steps * self.ar} env steps: {path}")
            c.next_snapshot = _next_due(c.next_snapshot, self.snapshot_every, c.agent_steps)
        minutes = cfg.checkpoint_minutes
        overdue = minutes is not None and time.monotonic() - self._last_checkpoint >= 60 * minutes
        # at a game boundary only: the emulator's mid-game state is not in a checkpoint, so a
        # checkpoint between two lives of an Atari game would resume into a new game
        if (c.agent_steps >= c.next_checkpoint or snapshot_due or overdue) and self._new_game:
            self.checkpoint()
            c.next_checkpoint = _next_due(c.next_checkpoint,
                                          cfg.checkpoint_every.to_agent_steps(self.ar),
                                          c.agent_steps)
        if snapshot_due and self.on_snapshot is not None:
            self.on_snapshot(path)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        """Ctrl-C, a logout (SIGHUP) or a shutdown (SIGTERM): finish the step, checkpoint, stop."""
        self.say(f"\ninterrupted ({signal.Signals(signum).name}): writing a checkpoint, then "
                 f"stopping (resume with lever-transfer resume)")
        self._stop = True

    def close(self) -> None:
        self.env.close()
        if self._eval_env is not None:
            self._eval_env.close()
        if hasattr(self, "metrics"):
            self.metrics.close()

    # ------------------------------------------------------------------ checkpoints
    def snapshot(self, eval_return: float, eval_return_std: float) -> Path:
        """Keep the agent's weights (no optimizers, no replay) at this step, with the evaluation
        just made at it.

        Snapshots are what ``pretrain`` publishes as ``TASK-20k`` etc.; they are never pruned.
        """
        c = self.counters
        state = {
            "weights": {k: v.detach().clone() for k, v in self.agent.state_dict().items()},
            "frozen_layers": self.agent.frozen_layers,
            "agent_steps": c.agent_steps, "env_steps": c.agent_steps * self.ar,
            "flops": c.flops, "wall_s": round(c.wall_s + self._elapsed(), 1),
            "eval_return": eval_return, "eval_return_std": eval_return_std,
            "eval_episodes": self.cfg.eval_episodes, "config": self.cfg.to_dict(),
        }
        return save_checkpoint(self.run_dir / "snapshots", c.agent_steps, state, keep=1 << 30)

    def checkpoint(self) -> Path:
        c = self.counters
        state = {
            "counters": asdict(c) | {"wall_s": c.wall_s + self._elapsed()},
            "agent": self.agent.export_state(),
            "replay": {"kind": type(self.replay).__name__, "init": self.replay.init_args(),
                       "state": self.replay.state_dict()},
            "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state()},
        }
        path = save_checkpoint(self.run_dir / "checkpoints", c.agent_steps, state)
        self._last_checkpoint = time.monotonic()
        return path

    def restore(self) -> bool:
        """Load the latest checkpoint of this run directory, if any."""
        path = latest_checkpoint(self.run_dir / "checkpoints")
        if path is None:
            return False
        _, state = load_checkpoint(path)
        self.counters = Counters(**state["counters"])
        self.agent.import_state(state["agent"])
        kind = {"PixelReplay": PixelReplay, "LatentReplay": LatentReplay}[state["replay"]["kind"]]
        self.replay = kind(**state["replay"]["init"])
        self.replay.load_state_dict(state["replay"]["state"])
        self.rng.bit_generator.state = state["rng"]["numpy"]
        torch.set_rng_state(state["rng"]["torch"])
        MetricsLog.truncate(self.run_dir / "metrics.jsonl", self.counters.agent_steps)
        return True
