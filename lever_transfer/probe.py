"""A linear probe: how much of a DMC task's physics state a frozen zoo encoder's features hold.

Ranking encoders by RL runs costs hours each; a ridge regression from frozen features to the
task's state ranks them in about a minute (Zhang et al. 2022, "Light-weight probing of
unsupervised representations for reinforcement learning"). The probe rolls the task out (random
actions, or the package's own policy), records every agent step's stacked uint8 observation with
dm_control's observation dict (each key a group: walker's ``orientations``, ``height``,
``velocity``) and the step's ``reward``, encodes the observations with the encoder and with an
untrained encoder of the same architecture (the floor: random convolutions alone predict a lot),
and reports held-out R^2 per group.

How it is scored, so that numbers from different encoders and layers compare:

- Held out by episode: the episodes are dealt into (at most four) folds and each fold is
  predicted by a ridge fit on the other episodes, so neighbouring frames, which are nearly
  equal, never sit on both sides. Fewer than three episodes are cut into four contiguous blocks
  instead, with a frame stack's worth of steps dropped after each cut (no shared frames).
  Cross-fitting scores every step: one held-out episode alone gave R^2 that swung by 0.5 with
  the seed (a walker lying still has almost no variance to explain).
- R^2 is sklearn's ``r2_score`` of the pooled out-of-fold predictions, per dimension, then the
  uniform mean over a group's dimensions. A dimension that is constant in the rollouts (a reward
  random actions never earn, a sensor never touched) has no R^2 (sklearn's default would say
  1.000 for predicting the constant): it is left out of the means and shown as ``-``.
  ``overall`` is the mean over every physics-state dimension (each dimension weighs the same),
  reward excluded: it is one number computed from the state, and has its own row.
- Features and targets are standardised with the fitting set's statistics. Each fold picks
  each group's ridge strength on its last training episode (a quarter of them), as a fraction
  of the Gram matrix's mean nonzero eigenvalue so one grid suits a 50-d latent and a 39,200-d
  conv map, then refits on all its training episodes; the test fold never chooses anything.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .errors import LeverError
from .precision import autocast, resolve_precision
from .recipe_files import is_atari_task
from .zoo.card import r2_text
from .zoo.config import DEFAULT_ACTION_REPEAT
from .zoo.encoder import ZooEncoder
from .zoo.package import EncoderPackage, build_encoder

DEFAULT_EPISODES = 4
DEFAULT_EPISODE_STEPS = 250  # a whole walker episode at action repeat 4: 1000 rendered frames
RIDGE_GRID = tuple(10.0 ** k for k in range(-6, 3))  # x the Gram matrix's mean eigenvalue
ENCODE_BATCH = 50
MAX_FOLDS = 4
SEED_STRIDE = 1000  # episode i of seed s starts from seed s * 1000 + i


@dataclass(frozen=True)
class GroupScore:
    """Held-out R^2 of one target group for the encoder and for its random-init floor."""

    name: str
    dims: int
    encoder_r2: float
    random_r2: float


@dataclass(frozen=True)
class ProbeResult:
    """What ``probe`` measured; ``steps`` counts agent steps (one encoded observation each)."""

    task: str
    reference: str
    layer: str
    steps: int
    episodes: int
    action_repeat: int
    policy: bool
    seed: int
    seconds: float
    groups: tuple[GroupScore, ...]
    overall_encoder_r2: float  # mean over physics-state dimensions, reward excluded
    overall_random_r2: float

    def to_dict(self) -> dict[str, Any]:
        return _defined(asdict(self))

    def table(self) -> str:
        state_dims = sum(g.dims for g in self.groups if g.name != "reward")
        rows = [(g.name, str(g.dims), r2_text(g.encoder_r2), r2_text(g.random_r2))
                for g in self.groups]
        rows.append(("state (overall)", str(state_dims), r2_text(self.overall_encoder_r2),
                     r2_text(self.overall_random_r2)))
        head = ("group", "dims", "encoder R^2", "random-init R^2")
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join([row[0].ljust(widths[0]),
                            *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:]))])
                 for row in [head, *rows]]
        how = "policy" if self.policy else "random actions"
        episodes = f"{self.episodes} episode{'s' if self.episodes != 1 else ''}"
        title = [f"linear probe of {self.reference} (layer {self.layer}) on {self.task}, "
                 f"out-of-fold R^2",
                 f"{self.steps} steps: {episodes} of {how} at action repeat "
                 f"{self.action_repeat}, seed {self.seed}, {self.seconds:.0f} s"]
        return "\n".join([*title, *lines])


# ---------------------------------------------------------------------------- ridge and R^2

def r2_per_dimension(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """sklearn's ``r2_score(multioutput="raw_values")``, NaN for a constant dimension (nothing
    to explain: R^2 is undefined there)."""
    residual = ((truth - predicted) ** 2).sum(axis=0)
    total = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, 1.0 - residual / safe, np.nan)


def mean_r2(values: np.ndarray) -> float:
    """The mean over the dimensions that have an R^2; NaN if none has."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else float("nan")


def _defined(document: Any) -> Any:
    """``document`` with NaN (an undefined R^2) as None, which JSON can hold."""
    if isinstance(document, float) and document != document:
        return None
    if isinstance(document, dict):
        return {k: _defined(v) for k, v in document.items()}
    if isinstance(document, (list, tuple)):
        return [_defined(v) for v in document]
    return document


def _standardise(fit: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Arrays scaled by ``fit``'s column means and standard deviations (constant columns: 0)."""
    mean = fit.mean(axis=0)
    std = fit.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return [((a - mean) / std).astype(np.float32) for a in (fit, *others)]


@dataclass(frozen=True)
class Ridge:
    """Closed-form ridge regressions from one set of standardised features to any standardised
    targets at any strength, for one split: solved once through the smaller Gram matrix
    (features x features, or samples x samples for a wide conv map), then each target group and
    strength costs two small matrix products."""

    new_in_eigenbasis: np.ndarray  # [m, r]: the samples to predict
    fit_to_eigenbasis: np.ndarray  # [r, n]: maps the fitting samples' targets
    eigenvalues: np.ndarray  # [r]
    scale: float  # the mean nonzero eigenvalue: strengths are relative to it

    @classmethod
    def solve(cls, x_fit: np.ndarray, x_new: np.ndarray) -> Ridge:
        x_fit, x_new = _standardise(x_fit, x_new)
        if x_fit.shape[1] <= x_fit.shape[0]:  # X^T X = V L V^T; w = V (L + a)^-1 V^T X^T y
            eigenvalues, vectors = np.linalg.eigh((x_fit.T @ x_fit).astype(np.float64))
            new = x_new.astype(np.float64) @ vectors
            fit = vectors.T @ x_fit.T.astype(np.float64)
        else:  # X X^T = U L U^T; prediction = Z X^T U (L + a)^-1 U^T y
            eigenvalues, vectors = np.linalg.eigh((x_fit @ x_fit.T).astype(np.float64))
            new = (x_new @ x_fit.T).astype(np.float64) @ vectors
            fit = vectors.T
        eigenvalues = np.clip(eigenvalues, 0.0, None)
        nonzero = eigenvalues[eigenvalues > 1e-9 * eigenvalues.max()]
        return cls(new, fit, eigenvalues, float(nonzero.mean()) if len(nonzero) else 1.0)

    def predict(self, y_fit: np.ndarray, strength: float) -> np.ndarray:
        """Predicted targets [m, d] of the ridge fit to ``y_fit`` [n, d] at ``strength``."""
        mean, std = y_fit.mean(axis=0), y_fit.std(axis=0)
        std = np.where(std > 1e-8, std, 1.0)
        weights = self.fit_to_eigenbasis @ ((y_fit - mean) / std)
        return (self.new_in_eigenbasis / (self.eigenvalues + strength * self.scale)) @ weights \
            * std + mean


def held_out_r2(features: np.ndarray, targets: Mapping[str, np.ndarray], segments: np.ndarray,
                strengths: Sequence[float] = RIDGE_GRID) -> dict[str, np.ndarray]:
    """Out-of-fold R^2 per dimension of each target group [n, d] predicted by ridge from
    ``features`` [n, f]. ``segments`` [n] numbers episodes or blocks (-1: left out); each fold
    tests on whole segments (see ``folds``), picks each group's strength on the last of its
    training segments, refits on all of them, and the pooled test predictions are scored."""
    used = segments >= 0
    truth = {name: y.reshape(len(y), -1).astype(np.float64) for name, y in targets.items()}
    predicted = {name: np.zeros_like(y) for name, y in truth.items()}
    for train, validation, test in folds(segments):
        fit = train & ~validation
        inner, outer = Ridge.solve(features[fit], features[validation]), Ridge.solve(
            features[train], features[test])
        for name, y in truth.items():
            best = max(strengths, key=lambda a: np.nan_to_num(mean_r2(r2_per_dimension(
                y[validation], inner.predict(y[fit], a))), nan=0.0))
            predicted[name][test] = outer.predict(y[train], best)
    return {name: r2_per_dimension(y[used], predicted[name][used]) for name, y in truth.items()}


def folds(segments: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Boolean masks (train, validation, test) of each fold: the segments are dealt in order
    into at most ``MAX_FOLDS`` test groups; each fold's validation part of train is its last
    training segments (a quarter of them, at least one)."""
    ids = np.unique(segments[segments >= 0])
    if len(ids) < 3:
        raise LeverError(f"a probe needs at least 3 episodes or blocks to split, got {len(ids)}")
    out = []
    for test_ids in np.array_split(ids, min(len(ids), MAX_FOLDS)):
        rest = ids[~np.isin(ids, test_ids)]
        validation_ids = rest[len(rest) - max(1, len(rest) // 4):]
        test = np.isin(segments, test_ids)
        out.append(((segments >= 0) & ~test, np.isin(segments, validation_ids), test))
    return out


def contiguous_blocks(episode: np.ndarray, blocks: int, gap: int) -> np.ndarray:
    """Segment ids for a run of few episodes: ``blocks`` equal contiguous blocks, the first
    ``gap`` steps after a cut inside an episode marked -1 (they share frames with the block
    before)."""
    n = len(episode)
    ids = np.minimum(np.arange(n) * blocks // n, blocks - 1)
    for i in np.flatnonzero(np.diff(ids)) + 1:
        if episode[i] == episode[i - 1]:
            ids[i:i + gap] = -1
    return ids


# ---------------------------------------------------------------------------- rollout

@dataclass(frozen=True)
class Rollout:
    """Per agent step: the stacked uint8 observation, its state groups and its episode."""

    observations: np.ndarray  # [n, S*C, H, W] uint8
    targets: dict[str, np.ndarray]  # group -> [n, dims] float64
    episode: np.ndarray  # [n] int


def rollout(env: Any, act: Any, episodes: int, episode_steps: int, seed: int) -> Rollout:
    """``episodes`` episodes of at most ``episode_steps`` agent steps of ``act(obs)``; each
    step's observation is recorded with the state it shows and the reward that led to it."""
    observations, episode_ids = [], []
    targets: dict[str, list[np.ndarray]] = {}
    for i in range(episodes):
        obs, _ = env.reset(seed=seed * SEED_STRIDE + i)
        for _ in range(episode_steps):
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            observations.append(obs)
            episode_ids.append(i)
            for key, value in {**env.physics_state(), "reward": np.array([reward])}.items():
                targets.setdefault(key, []).append(value)
            if terminated or truncated:
                break
    return Rollout(np.stack(observations), {k: np.stack(v) for k, v in targets.items()},
                   np.array(episode_ids))


# ---------------------------------------------------------------------------- encoders

def _layer_index(encoder: ZooEncoder, layer: int | str | None) -> int:
    names = encoder.layer_names
    if layer is None:
        return len(names)
    if isinstance(layer, str) and layer in names:
        return names.index(layer) + 1
    if isinstance(layer, str) and layer.isdigit():
        layer = int(layer)
    if isinstance(layer, int) and not isinstance(layer, bool) and 1 <= layer <= len(names):
        return layer
    raise LeverError(f"layer {layer!r} is not one of this encoder's layers: 1..{len(names)} or "
                     f"a name ({', '.join(names)})")


def random_init_encoder(package: EncoderPackage, seed: int) -> ZooEncoder:
    """An untrained encoder of the package's architecture (seeded; global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = build_encoder(package.config)
    return ZooEncoder(encoder, package.config, "random-init").eval()


@torch.no_grad()
def encode(encoder: ZooEncoder, observations: np.ndarray, layer: int,
           precision: str = "fp32") -> np.ndarray:
    """Flattened float32 features after ``layer``, in batches, the encoder run in
    ``precision`` (``fp32`` or ``bf16``)."""
    with autocast(precision, torch.device("cpu")):
        chunks = [encoder(observations[i:i + ENCODE_BATCH], layer).flatten(1).float().numpy()
                  for i in range(0, len(observations), ENCODE_BATCH)]
    return np.concatenate(chunks)


# ---------------------------------------------------------------------------- the probe

def _action_repeat(package: EncoderPackage, task: str | None = None) -> int:
    """The frame spacing the encoder learned from; an encoder pretrained offline on several
    tasks learned ``task`` at that task's own spacing."""
    from .zoo.transfer import learned_spacing

    if package.config.is_offline and task is not None:
        from .collect import action_repeat

        spacing = learned_spacing(package, task)
        return spacing if spacing is not None else action_repeat(task)
    repeat = package.observation.action_repeat
    return repeat if repeat is not None else DEFAULT_ACTION_REPEAT


def _refuse_atari(task: str, package: EncoderPackage | None = None) -> None:
    """The probe's targets are dm_control's physics state, which Atari has no counterpart of."""
    if is_atari_task(task):
        what = f"task {task} is"
    elif package is not None and package.observation.channels == 1:
        what = f"encoder {package.path.name} reads"
    else:
        return
    raise LeverError(f"the probe reads DeepMind Control physics state, and {what} Atari; probe a "
                     f"DMC encoder on a DMC task (lever-transfer tasks)")


def _collect(package: EncoderPackage, reference: str, task: str, episodes: int,
             episode_steps: int, policy: bool, seed: int, action_repeat: int,
             precision: str) -> Rollout:
    """Roll ``task`` out at the package's observation spec, with random actions (uniform,
    seeded) or the package's policy."""
    from .envs.dmc import make_env

    spec = package.observation
    env = make_env(task, action_repeat=action_repeat, frame_stack=spec.frame_stack,
                   render_size=spec.render_size, seed=seed,
                   render_quality=package.config.render_quality)
    try:
        if policy:
            from .evaluate import package_actor

            act = package_actor(package, reference, task, action_repeat, precision)
        else:
            rng = np.random.default_rng(seed)

            def act(obs: np.ndarray) -> np.ndarray:
                return rng.uniform(-1.0, 1.0, env.action_space.shape)
        return rollout(env, act, episodes, episode_steps, seed)
    finally:
        env.close()


def _scores(features: dict[str, np.ndarray], run: Rollout, segments: np.ndarray
            ) -> tuple[tuple[GroupScore, ...], dict[str, float]]:
    """Per group scores, and the mean R^2 over the state's dimensions (reward excluded), of the
    ``encoder`` and ``random`` features."""
    r2 = {which: held_out_r2(x, run.targets, segments) for which, x in features.items()}
    groups = tuple(GroupScore(name, target.shape[1], mean_r2(r2["encoder"][name]),
                              mean_r2(r2["random"][name]))
                   for name, target in run.targets.items())
    overall = {which: mean_r2(np.concatenate([v for name, v in scores.items()
                                              if name != "reward"]))
               for which, scores in r2.items()}
    return groups, overall


def probe(reference: str, task: str, *, episodes: int = DEFAULT_EPISODES,
          episode_steps: int = DEFAULT_EPISODE_STEPS, layer: int | str | None = None,
          policy: bool = False, seed: int = 0, action_repeat: int | None = None,
          precision: str = "auto") -> ProbeResult:
    """Held-out R^2 of ridge probes from the encoder ``reference`` (``hub:NAME``, ``hf://...``,
    a folder) at ``layer`` (default: the last, the latent) to ``task``'s physics state and reward,
    next to the same for a randomly initialised encoder. The rollout uses the encoder's
    observation spec and frame spacing (``action_repeat`` overrides it); the encoders run in
    ``precision`` (``auto``: bf16 where the CPU multiplies it natively)."""
    from .zoo.hub import resolve

    start = time.perf_counter()
    _refuse_atari(task)
    if isinstance(episodes, bool) or episodes < 1 or episode_steps < 3:
        raise LeverError(f"a probe needs at least 1 episode of 3 steps, got {episodes} of "
                         f"{episode_steps}")
    package = resolve(reference, say=lambda message: None).package
    _refuse_atari(task, package)
    encoder = ZooEncoder.from_package(package, package.path.name).eval()
    index = _layer_index(encoder, layer)
    repeat = action_repeat or _action_repeat(package, task)
    mode = resolve_precision(precision, "cpu").name
    run = _collect(package, reference, task, episodes, episode_steps, policy, seed, repeat, mode)
    segments = run.episode if episodes >= 3 else contiguous_blocks(
        run.episode, 4, package.observation.frame_stack)
    features = {"encoder": encode(encoder, run.observations, index, mode),
                "random": encode(random_init_encoder(package, seed), run.observations, index,
                                 mode)}
    groups, overall = _scores(features, run, segments)
    return ProbeResult(task, reference, encoder.layer_names[index - 1], len(run.observations),
                       episodes, repeat, policy, seed, time.perf_counter() - start, groups,
                       overall["encoder"], overall["random"])


# ---------------------------------------------------------------------------- several at once

@dataclass(frozen=True)
class Comparison:
    """Held-out R^2 of several encoders (and the first one's random init) on several tasks: every
    encoder reads the same rollout of a task, so the numbers compare across a row."""

    encoders: tuple[str, ...]  # the references, then "random init"
    rows: tuple[tuple[str, str, int, tuple[float, ...]], ...]  # (task, group, dims, R^2s)
    steps: dict[str, int]  # task -> agent steps probed
    action_repeats: dict[str, int]
    seed: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return _defined(asdict(self))

    def table(self) -> str:
        head = ("task", "group", "dims", *self.encoders)
        rows = [(task, group, str(dims), *(r2_text(r) for r in scores))
                for task, group, dims, scores in self.rows]
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join([*(c.ljust(w) for c, w in zip(row[:2], widths[:2])),
                            *(c.rjust(w) for c, w in zip(row[2:], widths[2:]))])
                 for row in [head, *rows]]
        spacing = ", ".join(f"{t} {self.action_repeats[t]} ({self.steps[t]} steps)"
                            for t in self.steps)
        return "\n".join([f"linear probe, out-of-fold R^2 (random actions, seed {self.seed}, "
                          f"{self.seconds:.0f} s); action repeat per task: {spacing}", *lines])


def compare(references: Sequence[str], tasks: Sequence[str], *,
            episodes: int = DEFAULT_EPISODES, episode_steps: int = DEFAULT_EPISODE_STEPS,
            seed: int = 0, action_repeat: int | None = None,
            precision: str = "auto") -> Comparison:
    """``probe`` for several encoders on several tasks, in one table: per task and state group
    (and ``state (overall)``), each encoder's last-layer R^2 and the first encoder's random
    init. A task is rolled out once, at the first encoder's spacing for it (``action_repeat``
    overrides), and every encoder reads that rollout."""
    from .zoo.hub import resolve

    start = time.perf_counter()
    packages = [resolve(ref, say=lambda message: None).package for ref in references]
    for task in tasks:
        _refuse_atari(task)
    for package in packages:
        _refuse_atari(tasks[0], package)
    first = packages[0]
    mode = resolve_precision(precision, "cpu").name
    encoders = [ZooEncoder.from_package(p, p.path.name).eval() for p in packages]
    rows, steps, repeats = [], {}, {}
    for task in tasks:
        repeat = action_repeat or _action_repeat(first, task)
        run = _collect(first, references[0], task, episodes, episode_steps, False, seed, repeat,
                       mode)
        segments = run.episode if episodes >= 3 else contiguous_blocks(
            run.episode, 4, first.observation.frame_stack)
        last = len(encoders[0].layer_names)  # the latent
        features = [encode(e, run.observations, len(e.layer_names), mode) for e in encoders]
        features.append(encode(random_init_encoder(first, seed), run.observations,
                               last, mode))
        scores = [held_out_r2(x, run.targets, segments) for x in features]
        for name, target in run.targets.items():
            rows.append((task, name, int(target.shape[1]),
                         tuple(mean_r2(r[name]) for r in scores)))
        state = [mean_r2(np.concatenate([v for k, v in r.items() if k != "reward"]))
                 for r in scores]
        dims = sum(t.shape[1] for k, t in run.targets.items() if k != "reward")
        rows.append((task, "state (overall)", int(dims), tuple(float(v) for v in state)))
        steps[task], repeats[task] = len(run.observations), repeat
    return Comparison((*references, "random init"), tuple(rows), steps, repeats, seed,
                      time.perf_counter() - start)
