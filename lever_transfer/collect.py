"""``lever-transfer collect``: exploratory DMC rollouts kept as a dataset, for offline encoders.

Pretraining an encoder without reward (ATC, CRPTpro) separates collecting data from training on
it; on a CPU that matters: rendering a frame costs 15-18 ms, training needs no environment, and
a dataset regenerated from its seed is the same dataset. Each episode is rolled out at the zoo
encoders' observation spec (100x100 renders, 3 stacked, each task's recipe action repeat) with
exploratory actions, uniform or Ornstein-Uhlenbeck (temporally correlated, so the body moves
further than under independent noise), or a zoo package's policy with Gaussian noise (states
random actions never reach: a walker upright and striding), and stored as one shard: its
single frames (the stack is rebuilt when read), actions, rewards and the physics state of every
frame (for the probe).

Why shards and not Minari (0.5): Minari stores image observations JPEG-encoded, which an encoder
would then learn from although RL never shows it JPEG artefacts, or raw (30 KB per 100x100 RGB
frame, stacked observations three times that). A shard here is a zip of ``.npy`` arrays, deflated
losslessly and written byte-for-byte the same for the same arrays; ``manifest.json`` names every
shard with its sha256, so a truncated or altered dataset is refused in one line, and ``collect``
run again with the same arguments writes only the episodes still missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import LeverError
from .files import write_atomic

FORMAT = "lever-transfer/dmc-dataset/1"
MANIFEST = "manifest.json"
EXPLORATIONS = ("uniform", "ou", "mixed", "policy")  # mixed: episodes alternate uniform and OU
RENDER_SIZE, FRAME_STACK = 100, 3  # the zoo's SAC+CURL encoders' observation spec
FRAME_BYTES = 3 * RENDER_SIZE * RENDER_SIZE
OU_THETA, OU_SIGMA = 0.15, 0.3  # stationary std 0.57: bounded actions that wander
MS_PER_FRAME = 18.0  # measured render cost here (notes/performance.md), for the estimate


class DatasetError(LeverError):
    """A dataset folder that is not what its manifest says."""


@dataclass(frozen=True)
class Plan:
    """What ``collect`` writes: episodes per task, from one seed."""

    tasks: tuple[str, ...]
    episodes: int
    seed: int
    exploration: str
    episode_steps: int | None  # agent steps per episode; None: the task's whole episode
    action_repeats: tuple[tuple[str, int], ...] = ()  # (task, repeat) overriding its recipe's
    policy: str | None = None  # exploration "policy": the zoo reference that acts
    policy_noise: float = 0.0  # std of the Gaussian noise added to its actions
    policy_sha256: str | None = None  # the package's, recorded: another one is another dataset

    def repeat_of(self, task: str) -> int:
        """The task's action repeat here: an override, else its recipe's (recorded in the
        manifest, so a recipe that changes later neither alters a dataset nor mixes into it)."""
        return dict(self.action_repeats).get(task) or action_repeat(task)

    def settings(self) -> dict[str, Any]:
        settings = {"format": FORMAT, "tasks": list(self.tasks), "episodes": self.episodes,
                    "seed": self.seed, "exploration": self.exploration,
                    "episode_steps": self.episode_steps, "render_size": RENDER_SIZE,
                    "frame_stack": FRAME_STACK, "render_quality": "paper",
                    "action_repeat": {task: self.repeat_of(task) for task in self.tasks}}
        if self.exploration == "policy":
            settings["policy"] = {"source": self.policy, "sha256": self.policy_sha256,
                                  "noise": self.policy_noise}
        return settings

    def describe_exploration(self) -> str:
        """The actions in words, for a card: ``mixed``, or the policy and its noise."""
        if self.exploration != "policy":
            return self.exploration
        return f"policy {self.policy} + N(0, {self.policy_noise:g})"

    @classmethod
    def of(cls, settings: dict[str, Any]) -> Plan:
        """The plan a manifest's settings record."""
        policy = settings.get("policy") or {}
        return cls(tuple(settings["tasks"]), settings["episodes"], settings["seed"],
                   settings["exploration"], settings["episode_steps"],
                   tuple(settings.get("action_repeat", {}).items()), policy.get("source"),
                   policy.get("noise", 0.0), policy.get("sha256"))

    def command(self, out: Path) -> str:
        """The ``collect`` command that writes (or continues) this dataset."""
        repeats = "".join(f" --action-repeat {task}={n}" for task, n in self.action_repeats
                          if n != action_repeat(task))
        steps = f" --episode-steps {self.episode_steps}" if self.episode_steps else ""
        policy = (f" --policy {self.policy} --policy-noise {self.policy_noise:g}"
                  if self.exploration == "policy" else "")
        return (f"lever-transfer collect {','.join(self.tasks)} --episodes {self.episodes} "
                f"--seed {self.seed} --exploration {self.exploration}{policy}{steps}{repeats} "
                f"--out {out}")

    def shards(self) -> Iterator[tuple[str, int, str]]:
        """(task, episode, shard name) of every episode, in the order they are collected."""
        for task in self.tasks:
            for episode in range(self.episodes):
                yield task, episode, f"{task}/ep-{episode:05d}.npz"


def action_repeat(task: str) -> int:
    """The action repeat of the task's recipe (cartpole 8, cheetah 4, finger and walker 2...)."""
    from .config import load_config

    return int(load_config(task, {}).action_repeat)


def episode_seed(seed: int, task: str, episode: int) -> np.random.SeedSequence:
    """The seed of one episode: the same for the same (seed, task, episode) on any machine."""
    return np.random.SeedSequence([seed, zlib.crc32(task.encode()), episode])


def exploration_of(plan: Plan, episode: int) -> str:
    if plan.exploration != "mixed":
        return plan.exploration
    return "uniform" if episode % 2 == 0 else "ou"


Policy = Callable[[np.ndarray], np.ndarray]  # stacked uint8 observation -> action


def explorer(kind: str, rng: np.random.Generator, dims: int, policy: Policy | None = None,
             noise: float = 0.0) -> Policy:
    """Actions in [-1, 1] for each observation: uniform, an Ornstein-Uhlenbeck process (which
    ignores the observation), or ``policy``'s action plus Gaussian noise of std ``noise``."""
    x = rng.uniform(-1.0, 1.0, dims)

    def act(obs: np.ndarray) -> np.ndarray:
        nonlocal x
        if kind == "uniform":
            return rng.uniform(-1.0, 1.0, dims).astype(np.float32)
        if kind == "policy":
            assert policy is not None
            a = np.asarray(policy(obs), np.float64) + noise * rng.standard_normal(dims)
            return np.clip(a, -1.0, 1.0).astype(np.float32)
        x = x - OU_THETA * x + OU_SIGMA * rng.standard_normal(dims)
        return np.clip(x, -1.0, 1.0).astype(np.float32)
    return act


def rollout(task: str, kind: str, sequence: np.random.SeedSequence, episode_steps: int | None,
            repeat: int, policy: Policy | None = None, noise: float = 0.0
            ) -> dict[str, np.ndarray]:
    """One episode: frames [T+1, 3, H, W] uint8 (the reset frame first), actions [T, A],
    rewards [T], and each physics-state group ``state.NAME`` [T+1, d] float32."""
    from .envs.dmc import make_env

    env_seed, action_seed = sequence.spawn(2)
    env = make_env(task, action_repeat=repeat, frame_stack=FRAME_STACK,
                   render_size=RENDER_SIZE, render_quality="paper",
                   seed=int(env_seed.generate_state(1)[0]))
    try:
        obs, _ = env.reset(seed=int(env_seed.generate_state(2)[1]))
        dims = int(np.prod(env.action_space.shape or ()))
        act = explorer(kind, np.random.default_rng(action_seed), dims, policy, noise)
        frames, taken, rewards = [obs[-3:]], [], []
        states = {k: [v] for k, v in env.physics_state().items()}
        done, steps = False, 0
        while not done and (episode_steps is None or steps < episode_steps):
            action = act(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            frames.append(obs[-3:])
            taken.append(action)
            rewards.append(reward)
            for key, value in env.physics_state().items():
                states[key].append(value)
            done, steps = terminated or truncated, steps + 1
    finally:
        env.close()
    arrays = {"frames": np.stack(frames), "actions": np.stack(taken),
              "rewards": np.asarray(rewards, np.float32)}
    arrays.update({f"state.{k}": np.stack(v).astype(np.float32) for k, v in states.items()})
    return arrays


def shard_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deflated zip of ``.npy`` files (what ``np.load`` reads), the same bytes for the same
    arrays: fixed timestamps, fixed order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as file:
                np.lib.format.write_array(file, np.ascontiguousarray(arrays[name]),
                                          allow_pickle=False)
    return buffer.getvalue()


def estimate(plan: Plan) -> str:
    """The size and time a collection will take, said before it starts."""
    frames = 0
    for task in plan.tasks:
        per_episode = plan.episode_steps or -(-1000 // plan.repeat_of(task))  # 1000 env steps
        frames += plan.episodes * (per_episode + 1)
    minutes = frames * MS_PER_FRAME / 60_000
    took = f"{minutes:.0f} minutes" if minutes >= 1 else "under a minute"
    return (f"{len(plan.tasks)} task(s) x {plan.episodes} episodes = {frames:,} frames, "
            f"{frames * FRAME_BYTES / 1e6:,.0f} MB of raw frames (stored deflated, several times "
            f"smaller), about {took} of rendering at {MS_PER_FRAME:.0f} ms a frame")


def collect(plan: Plan, out: Path, say: Callable[[str], None] = print,
            progress: bool = True) -> Path:
    """Roll out every episode of ``plan`` into ``out`` that its manifest does not hold intact
    yet (a stopped collection, run again, continues); returns the manifest's path."""
    from tqdm.auto import tqdm

    from .envs import check_task

    for task in plan.tasks:
        check_task(task)
    manifest = read_manifest(out) if (out / MANIFEST).is_file() else None
    if manifest is not None and manifest["settings"] != plan.settings():
        raise DatasetError(f"{out} holds a dataset collected with other settings "
                           f"({_difference(manifest['settings'], plan.settings())}); choose "
                           f"another --out, or repeat that collection's arguments to continue it")
    shards: dict[str, Any] = dict(manifest["shards"]) if manifest else {}
    todo = [(t, e, name) for t, e, name in plan.shards() if not _intact(out, name, shards)]
    actors = policy_actors(plan, {t for t, _, _ in todo})  # first: a misfit fails at once
    say(f"collect: {estimate(plan)}; {len(todo)} of {len(list(plan.shards()))} episodes to go "
        f"into {out}")
    with tqdm(total=len(todo), unit="episode", disable=not progress) as bar:
        for task, episode, name in todo:
            start = time.perf_counter()
            kind = exploration_of(plan, episode)
            arrays = rollout(task, kind, episode_seed(plan.seed, task, episode),
                             plan.episode_steps, plan.repeat_of(task), actors.get(task),
                             plan.policy_noise)
            data = shard_bytes(arrays)
            write_atomic(out / name, data)
            shards[name] = {"task": task, "episode": episode, "exploration": kind,
                            "steps": int(len(arrays["actions"])), "bytes": len(data),
                            "sha256": hashlib.sha256(data).hexdigest(),
                            "seconds": round(time.perf_counter() - start, 2)}
            _write_manifest(out, plan, shards)  # after the shard: a listed shard exists
            bar.update(1)
    _write_manifest(out, plan, shards)
    return out / MANIFEST


def policy_actors(plan: Plan, tasks: set[str]) -> dict[str, Policy]:
    """The actor of ``plan.policy`` on each of ``tasks`` at the dataset's action repeat (none
    unless the plan explores with a policy), deterministic (its mean action) and in float32 so
    the same seed gives the same dataset on any CPU; a package changed since the plan was made,
    or one that cannot drive a task, is refused in one line."""
    if plan.exploration != "policy" or not tasks:
        return {}
    from .evaluate import package_actor
    from .zoo.hub import resolve

    assert plan.policy is not None
    package = resolve(plan.policy, say=lambda message: None).package  # once: it hashes weights
    if package.config.sha256 != plan.policy_sha256:
        raise DatasetError(f"{plan.policy} is no longer the package this dataset was collected "
                           f"with (sha256 {plan.policy_sha256}); collect into another --out")
    spec = package.observation
    if (spec.channels, spec.render_size, spec.frame_stack) != (3, RENDER_SIZE, FRAME_STACK):
        raise LeverError(f"{plan.policy} reads {spec.frame_stack} stacked {spec.render_size}px "
                         f"frames of {spec.channels} channel(s), not the {FRAME_STACK} stacked "
                         f"{RENDER_SIZE}px RGB renders collect stores; choose a DMC SAC+CURL "
                         f"package with heads (lever-transfer zoo list)")
    acts_in = (package.config.heads or {}).get("action_dim")
    for task in sorted(tasks):
        takes = _action_dims(task)
        if acts_in is not None and acts_in != takes:
            raise LeverError(f"{plan.policy} acts in {acts_in} dimensions and {task} takes "
                             f"{takes}: its policy cannot drive {task}; collect {task} into "
                             f"another dataset with --exploration mixed (pretrain-offline reads "
                             f"several)")
    return {task: package_actor(package, plan.policy, task, plan.repeat_of(task), "fp32")
            for task in sorted(tasks)}


def _action_dims(task: str) -> int:
    from .envs import action_size
    from .envs.dmc import make_env

    env = make_env(task, render_size=RENDER_SIZE)
    try:
        return action_size(env.action_space)
    finally:
        env.close()


def _intact(out: Path, name: str, shards: dict[str, Any]) -> bool:
    path = out / name
    return (name in shards and path.is_file() and path.stat().st_size == shards[name]["bytes"]
            and _sha256(path) == shards[name]["sha256"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    return ", ".join(f"{k} {old.get(k)!r} there, {new.get(k)!r} here"
                     for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))


def _write_manifest(out: Path, plan: Plan, shards: dict[str, Any]) -> None:
    body = {"settings": plan.settings(), "shards": dict(sorted(shards.items()))}
    write_atomic(out / MANIFEST, (json.dumps(body, indent=1) + "\n").encode())


def read_manifest(out: Path) -> dict[str, Any]:
    path = Path(out) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{out} has no {MANIFEST}: not a dataset 'lever-transfer collect' "
                           f"wrote") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}); collect the dataset again") from None
    if not isinstance(manifest, dict) or manifest.get("settings", {}).get("format") != FORMAT:
        raise DatasetError(f"{path} is not a {FORMAT} manifest; collect the dataset again")
    return manifest


# ---------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class Episode:
    task: str
    frames: np.ndarray  # [T+1, 3, H, W] uint8
    actions: np.ndarray  # [T, A]
    rewards: np.ndarray  # [T]
    states: dict[str, np.ndarray]  # group -> [T+1, d]

    def stacked(self, t: int) -> np.ndarray:
        """The observation an agent saw at frame ``t``: the frames t-2..t (the first repeated at
        the episode's start, as the environment stacks them), [9, H, W]."""
        index = np.clip(np.arange(t - FRAME_STACK + 1, t + 1), 0, None)
        return self.frames[index].reshape(-1, *self.frames.shape[2:])


def load_dataset(out: Path) -> list[Episode]:
    """Every episode of a finished dataset, each shard checked against its manifest's sha256;
    a missing, truncated or altered shard, or an unfinished collection, is refused in one line."""
    out = Path(out)
    manifest = read_manifest(out)
    settings = manifest["settings"]
    plan = Plan.of(settings)
    again = f"run '{plan.command(out)}' again to regenerate it"
    episodes = []
    for task, _, name in plan.shards():
        entry = manifest["shards"].get(name)
        path = out / name
        if entry is None or not path.is_file():
            raise DatasetError(f"{out}: episode {name} is missing (the collection did not "
                               f"finish, or it was deleted); {again}")
        data = path.read_bytes()
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise DatasetError(f"{path} does not match its manifest (truncated or altered); "
                               f"delete it and {again}")
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            states = {k[len("state."):]: arrays[k] for k in arrays.files if k.startswith("state.")}
            episodes.append(Episode(task, arrays["frames"], arrays["actions"], arrays["rewards"],
                                    states))
    return episodes
