"""The training loop: env -> observation -> agent -> replay -> update -> metrics and checkpoints.

One loop serves every agent (SAC+CURL and DrQ on DMC with continuous actions, data-efficient
Rainbow on Atari with discrete ones, stored as their index): act, step the environment, store,
update, and at LeVER's Tf freeze and convert the replay (``lever.py``). A DMC environment runs
in its own process: the loop sends an action, runs the update while the worker renders, then
collects the observation (an Atari step is cheap and runs in place).

Checkpoints are written at episode ends (Atari: at game ends, as the emulator's mid-game state is
not saved), so a resumed run starts a fresh episode exactly where the original run would have,
and logs the same figures; only a stop signal writes one mid-episode, and the run resumed from it
starts a fresh episode there. Evaluations and snapshots happen at the step they are due, in the
evaluation's own environment, so they stay on their schedule either way. What a caller may act on
while a run goes on (an evaluation, a snapshot to publish, the freeze) comes out of
``Trainer.events()`` as events (``events.py``); what a run keeps on disk is ``persistence.py``'s.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator, cast

import gymnasium as gym
import numpy as np
import torch

from . import lever, persistence
from .agents import make_agent
from .config import Config
from .envs import action_size, evaluation_env, training_env
from .errors import LeverError
from .evaluate import evaluate
from .events import Evaluated, Event, Frozen, SnapshotSaved, next_due
from .flops import CachedFlops
from .log import info
from .metrics import MetricsLog
from .persistence import Counters
from .precision import resolve_precision
from .replay import LatentReplay, PixelReplay
from .replay.pixel import pixel_entry_bytes
from .run_dir import RunDir
from .runtime import cpu_seconds, keep_freed_memory, resolve_device

if TYPE_CHECKING:
    from .zoo.package import EncoderPackage

# what stops a run cleanly (a checkpoint first): Ctrl-C, a closed terminal, a shutdown or `kill`
STOP_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


class Trainer:
    """One run, kept in its run directory (a ``RunDir``)."""

    def __init__(self, cfg: Config, run_dir: Path | RunDir, progress: bool = True,
                 say: Callable[[str], None] = info):
        self.device = resolve_device(cfg.device)
        # decided once per run: config.yaml, metrics, packages and cards name the resolved one
        self.precision = resolve_precision(cfg.precision, self.device)
        cfg = cfg.replace(precision=self.precision.name)
        self.cfg, self.run_dir, self.progress, self.say = cfg, RunDir(run_dir), progress, say
        keep_freed_memory()
        self.ar = cfg.action_repeat
        self.total = cfg.agent_steps(cfg.steps)
        self.init_steps = cfg.agent_steps(cfg.init_steps)
        # Tf; a finetune freezes its pretrained layers before the first step
        self.freeze_step = (0 if cfg.pretrained else
                            cfg.agent_steps(cfg.freeze_at) if cfg.lever else None)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.env = training_env(cfg)
        space_shape = self.env.observation_space.shape
        assert space_shape is not None  # a Box of stacked frames [S*C, H, W]
        obs_shape = cast("tuple[int, int, int]", tuple(space_shape))
        self.action_space = self.env.action_space
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        # width of an action in the replay: a discrete action is stored as its index
        self.action_dim = 1 if self.discrete else int(
            cast("tuple[int, ...]", self.action_space.shape)[0])  # a Box: it has a shape
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
        self.plan = lever.latent_plan(self.agent, cfg, self.action_dim, self.pixel_entry_bytes)
        sampler = self._sampler()
        self.replay: PixelReplay | LatentReplay = PixelReplay(
            lever.pixel_capacity(cfg, self.pixel_entry_bytes, sampler), self.frame_shape,
            cfg.frame_stack, self.action_dim, n_step=self.agent.n_step, gamma=cfg.discount,
            sampler=sampler)
        self.snapshot_every = (cfg.agent_steps(cfg.snapshot_every)
                               if cfg.snapshot_every is not None else None)
        self.counters = Counters(next_eval=cfg.agent_steps(cfg.eval_every),
                                 next_checkpoint=cfg.agent_steps(cfg.checkpoint_every),
                                 next_snapshot=self.snapshot_every or 0)
        self.update_flops = CachedFlops()
        self.metrics: MetricsLog | None = None
        self._eval_env: Any = None
        self._stop = False
        self._update_metrics: dict[str, list[float]] = {}  # this episode's losses, per name
        self._snapshots: list[SnapshotSaved] = []  # saved this episode, announced at its end
        self._last_eval: str | None = None  # the progress bar's "eval" figure

    def _sampler(self) -> Any:
        """The replay's sampler, as the agent asks (a schedule runs from the first update at
        init_steps to the last step)."""
        return self.agent.replay_sampler(self.init_steps, self.total)

    def header(self) -> str:
        cfg, c = self.cfg, self.counters
        lines = [f"lever-transfer: {cfg.task} | device {self.device} | precision "
                 f"{self.precision.describe()} | seed {cfg.seed} | "
                 f"{self.total} agent steps = {self.total * self.ar} env steps "
                 f"(action repeat {self.ar})",
                 f"replay: {self.replay.capacity} entries x {self.replay.bytes_per_entry} B "
                 f"({type(self.replay).__name__})"]
        if self.freeze_step is None:
            lines.append(f"LeVER off: {self.agent.entry().baseline} baseline, the encoder "
                         f"trains throughout")
        else:
            when = f"Tf = {self.freeze_step} agent steps = {self.freeze_step * self.ar} env steps"
            if cfg.pretrained:
                loads = "encoder and heads" if cfg.transfer == "full" else "encoder, new heads"
                when = (f"finetune from {cfg.pretrained} (transfer {cfg.transfer}: {loads}), "
                        f"frozen from step 0")
            lines.append(f"LeVER: {when}; {self.plan.describe()}")
        if c.agent_steps:
            lines.append(f"resuming at agent step {c.agent_steps} (episode {c.episodes})")
        return "\n".join(lines)

    def load_pretrained(self, package: EncoderPackage) -> None:
        """Start from a zoo encoder: its observation spec must fit, its weights load strictly."""
        from .zoo.transfer import load_into_agent

        load_into_agent(self.agent, package, self.cfg, self.action_size)

    # ------------------------------------------------------------------ the loop
    def run(self) -> Path:
        """Train to the end (or until a stop signal), checkpointing as configured."""
        for _ in self.events():
            pass
        return self.run_dir.path

    def events(self) -> Iterator[Event]:
        """Train, yielding what a caller may act on (publish a snapshot, show an evaluation)."""
        from tqdm.auto import tqdm

        self._start()
        c = self.counters
        previous = {sig: signal.signal(sig, self._on_stop_signal) for sig in STOP_SIGNALS}
        bar = tqdm(total=self.total, initial=c.agent_steps, unit="step", dynamic_ncols=True,
                   disable=not self.progress, mininterval=1.0)
        try:
            if self.freeze_step == 0 and not self.agent.frozen_layers:
                yield self.freeze()
            while c.agent_steps < self.total and not self._stop:
                row = yield from self.episode(bar)
                self.log(row)
                yield from self._after_episode(bar, row)
            self.checkpoint()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            bar.close()
            self.close()

    def _start(self) -> None:
        self.run_dir.write_config(self.cfg)
        if not self.run_dir.holds_run():  # rows of an attempt killed before its first checkpoint
            self.run_dir.metrics_path.unlink(missing_ok=True)
        self.metrics = MetricsLog(self.run_dir.metrics_path, self.run_dir.tensorboard_dir
                                  if self.cfg.tensorboard else None)
        self._t0 = time.perf_counter()
        self._cpu0 = cpu_seconds()
        self._last_checkpoint = time.monotonic()
        self.say(self.header())

    def episode(self, bar: Any) -> Generator[Event, None, dict[str, Any]]:
        """One episode (or the part of it before a stop); returns its metrics row."""
        cfg, c = self.cfg, self.counters
        obs, _ = self.env.reset(seed=self._episode_seed() if self._new_game else None)
        self._store(None, 0.0, False, obs)
        episode_return, update_ms, done = 0.0, [], False
        self._update_metrics = {}
        while not done and c.agent_steps < self.total and not self._stop:
            if c.agent_steps == self.freeze_step and not self.agent.frozen_layers:
                yield self.freeze()
            action = self._act(obs)
            self.env.step_async(action)
            if c.agent_steps >= self.init_steps and len(self.replay) >= cfg.batch_size:
                update_ms += [self._update() for _ in range(cfg.updates_per_step)]
            obs, reward, terminated, truncated, info = self.env.step_wait()
            self._store(action, reward, terminated, obs)
            episode_return += reward
            c.agent_steps += 1
            done = terminated or truncated
            self._new_game = info.get("game_over", True) or truncated
            bar.update(1)
            yield from self._evaluate_when_due(bar)
        c.episodes += 1
        return {"kind": "train", "episode": c.episodes, "episode_return": episode_return,
                "update_ms": float(np.mean(update_ms)) if update_ms else None,
                "interrupted": not done and self._stop,
                **{name: float(np.mean(values)) for name, values in self._update_metrics.items()}}

    def _act(self, obs: np.ndarray) -> Any:
        """Uniformly random actions for the first init_steps, then the agent's."""
        if self.counters.agent_steps >= self.init_steps:
            return self.agent.act(obs, sample=True)
        if self.discrete:
            return int(self.rng.integers(cast(gym.spaces.Discrete, self.action_space).n))
        return self.rng.uniform(-1, 1, self.action_dim).astype(np.float32)

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
        batch = self.replay.sample(self.cfg.batch_size, self.rng, step)  # the sampler's schedule
        kind = (f"{type(self.replay).__name__}-{self.agent.frozen_layers}-"
                f"{self.agent.update_variant(step)}")
        result, flops = self.update_flops.run(kind, lambda: self.agent.update(batch, step))
        self._check_finite(result.metrics, "the update's loss")
        for name, value in result.metrics.items():  # averaged into the episode's metrics row
            self._update_metrics.setdefault(name, []).append(value)
        if result.priorities is not None:  # the sampler applies its exponent
            assert batch.ids is not None  # a replay's batches carry their entry numbers
            self.replay.update_priorities(batch.ids, result.priorities)
        self.counters.flops += flops
        return (time.perf_counter() - start) * 1000

    def freeze(self) -> Frozen:
        """LeVER's switch (``lever.py``), logged; the run's encoder is packaged as it froze."""
        remaining = lever.entries_for(self.cfg, max(0, self.total - self.counters.agent_steps))
        self.replay, row = lever.freeze_and_convert(self.agent, self.replay, self.plan, remaining)
        self.counters.flops += row.get("conversion_flops", 0)
        self.log(row)
        self.save_encoder()
        return Frozen(row)

    def _evaluate_when_due(self, bar: Any) -> Iterator[Event]:
        """Evaluate (and snapshot) at the step it is due, mid-episode too: a run resumed from a
        checkpoint written mid-episode by a stop signal starts a fresh episode there, so episode
        ends drift off the schedule, but its evaluations and snapshots stay on it (the
        evaluation runs in its own environment)."""
        c, cfg = self.counters, self.cfg
        snapshot_due = self.snapshot_every is not None and c.agent_steps >= c.next_snapshot
        if not (c.agent_steps >= c.next_eval or c.agent_steps >= self.total or snapshot_due):
            return
        evaluated = self.evaluate(cfg.eval_episodes)
        bar.write(f"eval at {evaluated.env_steps} env steps: {evaluated.mean:.1f} ± "
                  f"{evaluated.std:.1f}")
        c.next_eval = next_due(c.next_eval, cfg.agent_steps(cfg.eval_every), c.agent_steps)
        self._last_eval = f"{evaluated.mean:.0f}"
        yield evaluated
        if snapshot_due:  # announced after the next checkpoint, which then holds it
            self._snapshots.append(SnapshotSaved(self.snapshot(evaluated), evaluated.env_steps))
            bar.write(f"snapshot at {evaluated.env_steps} env steps: {self._snapshots[-1].path}")
            c.next_snapshot = next_due(c.next_snapshot, self.snapshot_every or 1, c.agent_steps)

    def _after_episode(self, bar: Any, row: dict[str, Any]) -> Iterator[Event]:
        """Show progress; checkpoint when due (only between games) and announce the snapshots
        saved since."""
        c, cfg = self.counters, self.cfg
        postfix = {"ret": f"{row['episode_return']:.0f}", "FLOPs": f"{c.flops:.2e}",
                   "sps": f"{c.agent_steps / max(self._wall(), 1e-9):.1f}",
                   "Tf": ("off" if self.freeze_step is None else
                          "frozen" if self.agent.frozen_layers else str(self.freeze_step))}
        if self._last_eval is not None:
            postfix["eval"] = self._last_eval
        bar.set_postfix(postfix, refresh=False)
        snapshots, self._snapshots = self._snapshots, []
        minutes = cfg.checkpoint_minutes
        overdue = minutes is not None and time.monotonic() - self._last_checkpoint >= 60 * minutes
        # at a game boundary only: the emulator's mid-game state is not in a checkpoint, so a
        # checkpoint between two lives of an Atari game would resume into a new game
        if (c.agent_steps >= c.next_checkpoint or snapshots or overdue) and self._new_game:
            self.checkpoint()
            c.next_checkpoint = next_due(c.next_checkpoint, cfg.agent_steps(cfg.checkpoint_every),
                                         c.agent_steps)
        yield from snapshots

    def evaluate(self, episodes: int) -> Evaluated:
        """The evaluation policy's return over ``episodes`` (``evaluate.py``), logged."""
        if self._eval_env is None:
            self._eval_env = evaluation_env(self.cfg)
        result = evaluate(self.agent, self._eval_env, episodes, self.cfg.seed)
        self.log({"kind": "eval", "eval_return": result.mean, "eval_return_std": result.std})
        return Evaluated(self.counters.agent_steps * self.ar, result.mean, result.std)

    # ------------------------------------------------------------------ guards and logs
    def _check_finite(self, values: dict[str, Any], what: str) -> None:
        """Stop at the first NaN or infinity instead of training on: no checkpoint is written
        after it, so the last one (before the divergence) is what ``resume`` continues from."""
        bad = {k: v for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            last = self.run_dir.latest_checkpoint()
            lr = next(k for k in vars(self.cfg.agent) if k.endswith("lr"))  # its first rate
            where = (f"the last checkpoint ({last.name}) is from before it: resume from it with a "
                     f"lower learning rate, e.g. lever-transfer resume {self.run_dir} --set "
                     f"{lr}=..." if last else "no checkpoint was written yet")
            values_text = ", ".join(f"{k}={v}" for k, v in bad.items())
            raise LeverError(f"training stopped at agent step {self.counters.agent_steps}: "
                             f"{what} is not finite ({values_text}); {where}")

    def _episode_seed(self) -> int:
        return self.cfg.seed * 1_000_003 + self.counters.episodes

    def log(self, row: dict[str, Any]) -> None:
        c = self.counters
        assert self.metrics is not None, "log() before events() started the run"
        self.metrics.write({"env_steps": c.agent_steps * self.ar, "agent_steps": c.agent_steps,
                            "flops": c.flops, "replay_bytes": self.replay.nbytes,
                            "replay_capacity": self.replay.capacity,
                            "replay_size": len(self.replay), "phase": self.phase,
                            "wall_s": round(self._wall(), 2),
                            "cpu_s": round(self._cpu(), 2), "precision": self.cfg.precision,
                            **row})

    @property
    def phase(self) -> str:
        return "latents" if isinstance(self.replay, LatentReplay) else (
            "frozen-pixels" if self.agent.frozen_layers else "pixels")

    def _wall(self) -> float:
        """Wall seconds of the whole run so far, across resumes."""
        return self.counters.wall_s + time.perf_counter() - self._t0

    def _cpu(self) -> float:
        """CPU seconds of the whole run so far, across resumes."""
        return self.counters.cpu_s + cpu_seconds() - self._cpu0

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        """Ctrl-C, a logout (SIGHUP) or a shutdown (SIGTERM): finish the step, checkpoint, stop."""
        self.say(f"\ninterrupted ({signal.Signals(signum).name}): writing a checkpoint, then "
                 f"stopping (resume with lever-transfer resume)")
        self._stop = True

    def close(self) -> None:
        self.env.close()
        if self._eval_env is not None:
            self._eval_env.close()
        if self.metrics is not None:
            self.metrics.close()

    # ------------------------------------------------------------------ what a run keeps
    def _so_far(self) -> Counters:
        """The counters with the wall and CPU seconds of the whole run so far."""
        return replace(self.counters, wall_s=self._wall(), cpu_s=self._cpu())

    def save_encoder(self) -> Path:
        """The run's encoder (and heads) as a zoo package in the run's ``encoder`` folder."""
        return persistence.save_encoder(self.run_dir, self._so_far(), self.agent, self.cfg,
                                        self.action_size)

    def snapshot(self, evaluated: Evaluated) -> Path:
        """Keep the agent's weights at this step with the evaluation just made at it."""
        return persistence.save_snapshot(self.run_dir, self._so_far(), self.agent, self.cfg,
                                         evaluated)

    def checkpoint(self) -> Path:
        path = persistence.save_checkpoint(self.run_dir, self._so_far(), self.agent, self.replay,
                                           self.rng)
        self._last_checkpoint = time.monotonic()
        return path

    def restore(self) -> bool:
        """Load the latest checkpoint of this run directory, if any."""
        restored = persistence.restore_checkpoint(self.run_dir, self.agent, self._sampler(),
                                                  self.cfg.discount, self.rng)
        if restored is None:
            return False
        self.counters, self.replay = restored
        return True
