"""``lever-transfer pretrain-offline``: a zoo encoder trained without reward on collected data.

The encoder is the zoo's SAC+CURL one (four convs, fc and LayerNorm, a 50-d latent on 84x84 crops
of 100x100 renders, 3 stacked frames), so every finetune path takes it. Objectives:

- ``atc``, augmented temporal contrast (Stooke et al. 2021): the anchor is a random crop of the
  observation at t through the online encoder and a residual MLP predictor; the positive is a
  random crop of the observation k frames later through a momentum (EMA) copy of the encoder;
  the other positives of the batch are the negatives of a bilinear contrastive loss.
- ``curl``, CURL's instance discrimination on the same data: the positive is another crop of the
  same observation (no predictor), the comparison ATC was measured against.

Batches mix the domains: every sample first draws a task uniformly, then an episode and a step,
so a domain with more data does not dominate. A run keeps checkpoints of its weights, optimizer
and random states only (the data is regenerated from its seed by ``collect``) and resumes to the
same weights; every ``snapshot_every`` updates it writes a zoo package (the encoder, and its fc as
the actor's, for ``finetune --transfer encoder``) that ``pretrain-offline`` publishes.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .agents.networks import soft_update
from .augment import random_crop
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .collect import Episode, Plan, load_dataset, read_manifest
from .encoders import LayeredEncoder, make_encoder
from .errors import LeverError
from .files import write_atomic
from .precision import autocast, full_precision, resolve_precision
from .runtime import cpu_seconds, keep_freed_memory

OBJECTIVES = ("atc", "curl")
SETTINGS_FILE = "offline.json"
METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class OfflineSettings:
    """Everything a run depends on; saved beside it, so ``resume`` needs only the folder."""

    data: tuple[str, ...]
    name: str = "dmc-multi"  # snapshots are NAME-<objective>-<updates>
    objective: str = "atc"
    updates: int = 20_000
    batch_size: int = 256
    lr: float = 1e-3
    temporal_shift: int = 1  # ATC's k: the positive is k agent steps after the anchor
    target_tau: float = 0.01  # the momentum encoder's EMA rate, every update
    predictor_hidden: int = 512  # ATC's residual predictor
    snapshot_every: int = 5_000
    log_every: int = 100
    checkpoint_minutes: float = 5.0
    seed: int = 0
    precision: str = "auto"
    recipe: str = "walker_stand_curl"  # the zoo encoders' architecture and observation spec

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise LeverError(f"objective {self.objective!r}: use one of {', '.join(OBJECTIVES)}")
        for key in ("updates", "batch_size", "temporal_shift", "snapshot_every", "log_every",
                    "predictor_hidden", "seed"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < (key != "seed"):
                raise LeverError(f"{key} must be a whole number of at least {int(key != 'seed')},"
                                 f" got {value!r}")
        for key in ("lr", "target_tau", "checkpoint_minutes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise LeverError(f"{key} must be a positive number, got {value!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> OfflineSettings:
        return cls(**{**values, "data": tuple(values["data"])})

    def changed_in(self, other: OfflineSettings) -> list[str]:
        """The settings ``other`` gives differently, but for ``updates`` (a run may grow)."""
        return sorted(k for k, v in asdict(self).items()
                      if k != "updates" and v != getattr(other, k))


class ContrastiveHead(nn.Module):
    """The bilinear logits z_anchor W z_positive^T, after ATC's residual predictor (identity
    for CURL)."""

    def __init__(self, feature_dim: int, hidden: int, predictor: bool):
        super().__init__()
        self.predictor = (nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(),
                                        nn.Linear(hidden, feature_dim)) if predictor else None)
        self.w = nn.Parameter(torch.eye(feature_dim))

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        if self.predictor is not None:
            anchor = anchor + self.predictor(anchor)
        with full_precision(anchor.device):  # the logits and the loss in float32
            logits = anchor.float() @ self.w @ positive.float().T
            return logits - logits.max(dim=1, keepdim=True).values


def contrastive_loss(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(InfoNCE loss, top-1 accuracy): each anchor's positive is on the diagonal."""
    labels = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, labels), (logits.argmax(1) == labels).float().mean()


@dataclass
class Sampler:
    """Anchor/positive observation pairs from episodes, domains drawn uniformly."""

    episodes: list[Episode]
    shift: int
    by_task: dict[str, list[int]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_task = {}
        for i, episode in enumerate(self.episodes):
            if len(episode.frames) > self.shift:  # room for a positive k frames on
                self.by_task.setdefault(episode.task, []).append(i)
        if not self.by_task:
            raise LeverError(f"no episode has more than {self.shift} frames; collect longer "
                             f"episodes or lower temporal_shift")

    @property
    def tasks(self) -> list[str]:
        return sorted(self.by_task)

    def sample(self, rng: np.random.Generator, batch: int, shift: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [batch, 9, H, W] anchors at t and positives at t + ``shift``."""
        tasks = self.tasks
        anchors, positives = [], []
        for task_index in rng.integers(len(tasks), size=batch):
            pool = self.by_task[tasks[task_index]]
            episode = self.episodes[pool[rng.integers(len(pool))]]
            t = int(rng.integers(len(episode.frames) - shift))
            anchors.append(episode.stacked(t))
            positives.append(episode.stacked(t + shift))
        return np.stack(anchors), np.stack(positives)


class OfflinePretrainer:
    """One offline pretraining run in its folder: train, checkpoint, snapshot, resume."""

    def __init__(self, settings: OfflineSettings, run_dir: Path,
                 say: Callable[[str], None] = print):
        from .config import load_config

        self.settings, self.run_dir, self.say = settings, Path(run_dir), say
        keep_freed_memory()
        self.cfg = load_config(settings.recipe, {})
        self.device = torch.device("cpu")
        self.precision = resolve_precision(settings.precision, self.device)
        torch.manual_seed(settings.seed)
        cfg = self.cfg
        self.encoder: LayeredEncoder = make_encoder(
            cfg.encoder, (3 * cfg.frame_stack, cfg.crop_size, cfg.crop_size), cfg.feature_dim,
            cfg.num_filters, cfg.num_conv_layers, cfg.channels_last)
        self.target = copy.deepcopy(self.encoder).requires_grad_(False)
        self.head = ContrastiveHead(cfg.feature_dim, settings.predictor_hidden,
                                    predictor=settings.objective == "atc")
        self.optimizer = torch.optim.Adam([*self.encoder.parameters(),
                                           *self.head.parameters()], lr=settings.lr)
        self.rng = np.random.default_rng(settings.seed)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.step, self.wall_s, self.cpu_s = 0, 0.0, 0.0
        self.episodes = [e for folder in settings.data for e in load_dataset(Path(folder))]
        self.sampler = Sampler(self.episodes, settings.temporal_shift)

    # ------------------------------------------------------------------ training
    def update(self) -> dict[str, float]:
        """One gradient step of the objective on a batch mixed across domains."""
        s = self.settings
        shift = s.temporal_shift if s.objective == "atc" else 0
        anchors, positives = self.sampler.sample(self.rng, s.batch_size, shift)
        loss, accuracy = self.loss(torch.as_tensor(anchors), torch.as_tensor(positives))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        soft_update(self.encoder, self.target, s.target_tau)
        self.step += 1
        return {"loss": loss.item(), "accuracy": accuracy.item()}

    def loss(self, anchors: torch.Tensor, positives: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(contrastive loss, accuracy) of uint8 anchor and positive stacks, each randomly
        cropped; the positives go through the momentum encoder without gradients."""
        crop = self.cfg.crop_size
        anchor = random_crop(anchors, crop, self.generator)
        positive = random_crop(positives, crop, self.generator)
        with autocast(self.precision.name, self.device):
            with torch.no_grad():
                z_positive = self.target(positive)
            return contrastive_loss(self.head(self.encoder(anchor), z_positive))

    def events(self, progress: bool = True) -> Iterator[Path]:
        """Train to ``updates``, yielding each snapshot package as it is written."""
        from tqdm.auto import tqdm

        s = self.settings
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.run_dir / SETTINGS_FILE,
                     (json.dumps(asdict(s), indent=1) + "\n").encode())
        self.say(f"pretrain-offline: {s.objective} on {len(self.episodes)} episodes of "
                 f"{', '.join(self.sampler.tasks)}; {s.updates} updates of {s.batch_size}, "
                 f"precision {self.precision.describe()}"
                 + (f"; resuming at update {self.step}" if self.step else ""))
        t0, cpu0, last_checkpoint = time.perf_counter(), cpu_seconds(), time.monotonic()
        losses: list[dict[str, float]] = []
        with tqdm(total=s.updates, initial=self.step, unit="update", disable=not progress,
                  mininterval=1.0) as bar, open(self.run_dir / METRICS_FILE, "a") as log:
            while self.step < s.updates:
                losses.append(self.update())
                bar.update(1)
                now_wall = self.wall_s + time.perf_counter() - t0
                now_cpu = self.cpu_s + cpu_seconds() - cpu0
                if self.step % s.log_every == 0:
                    row = {"step": self.step, "wall_s": round(now_wall, 2),
                           "cpu_s": round(now_cpu, 2),
                           **{k: float(np.mean([m[k] for m in losses])) for k in losses[0]}}
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.2f}")
                    losses = []
                snapshot = self.step % s.snapshot_every == 0 or self.step == s.updates
                overdue = time.monotonic() - last_checkpoint >= 60 * s.checkpoint_minutes
                if snapshot or overdue:
                    self.wall_s, self.cpu_s = now_wall, now_cpu
                    t0, cpu0 = time.perf_counter(), cpu_seconds()
                    self.checkpoint()
                    last_checkpoint = time.monotonic()
                if snapshot:
                    yield self.snapshot()

    def run(self, progress: bool = False) -> list[Path]:
        return list(self.events(progress))

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        return {"encoder": self.encoder.state_dict(), "target": self.target.state_dict(),
                "head": self.head.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.bit_generator.state, "generator": self.generator.get_state(),
                "step": self.step, "wall_s": self.wall_s, "cpu_s": self.cpu_s}

    def checkpoint(self) -> Path:
        return save_checkpoint(self.run_dir / "checkpoints", self.step, self.state())

    def restore(self) -> bool:
        """Continue from the folder's latest checkpoint, if there is one."""
        path = latest_checkpoint(self.run_dir / "checkpoints")
        if path is None:
            return False
        _, state = load_checkpoint(path)
        self.encoder.load_state_dict(state["encoder"])
        self.target.load_state_dict(state["target"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        self.step, self.wall_s, self.cpu_s = state["step"], state["wall_s"], state["cpu_s"]
        return True

    def snapshot_name(self) -> str:
        s = self.settings
        steps = f"{self.step // 1000}k" if self.step % 1000 == 0 else str(self.step)
        return f"{s.name}-{s.objective}-{steps}"

    def snapshot(self) -> Path:
        """The encoder as a zoo package (its fc doubles as the actor's) in ``packages/``."""
        from .zoo.card import model_card
        from .zoo.package import encoder_spec, write_package

        cfg = self.cfg
        config = encoder_spec(self.encoder, cfg.encoder, cfg.frame_stack, cfg.render_size,
                              cfg.crop_size, cfg.num_filters)
        config["source"] = self.source()
        weights = self.encoder.state_dict()
        fc = f"layers.{self.encoder.num_layers - 1}."
        tensors = {f"encoder.{k}": v for k, v in weights.items()}
        tensors.update({f"actor_fc.{k[len(fc):]}": v.clone() for k, v in weights.items()
                        if k.startswith(fc)})
        name = self.snapshot_name()
        return write_package(self.run_dir / "packages" / name, tensors, config,
                             lambda final: model_card(name, final))

    def source(self) -> dict[str, Any]:
        """What a package says about how it was trained (``kind: offline``)."""
        from .collect import action_repeat

        s = self.settings
        collected = [read_manifest(Path(folder))["settings"] for folder in s.data]
        explorations: dict[str, list[str]] = {}  # a task may come from several datasets
        for c in collected:
            described = Plan.of(c).describe_exploration()
            for task in c["tasks"]:
                if described not in explorations.setdefault(task, []):
                    explorations[task].append(described)
        repeats = {task: n for c in collected for task, n in c.get("action_repeat", {}).items()}
        tasks: dict[str, dict[str, Any]] = {}
        for episode in self.episodes:
            entry = tasks.setdefault(episode.task, {
                "episodes": 0, "frames": 0,
                "exploration": "; ".join(explorations.get(episode.task, [])) or None,
                "action_repeat": repeats.get(episode.task) or action_repeat(episode.task)})
            entry["episodes"] += 1
            entry["frames"] += len(episode.frames)
        return {"kind": "offline", "task": s.name, "tasks": tasks,
                "algorithm": f"{s.objective.upper()} (offline, no reward)",
                "objective": s.objective, "updates": self.step, "batch_size": s.batch_size,
                "temporal_shift": s.temporal_shift, "seed": s.seed, "wall_s": round(self.wall_s, 1),
                "cpu_s": round(self.cpu_s, 1), "precision": self.precision.name,
                "render_quality": "paper", "settings": asdict(s)}
