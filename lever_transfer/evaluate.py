"""Evaluation: the policy's return over whole episodes, and a video of the first one.

Training evaluates with this every ``eval_every`` steps; ``lever-transfer eval`` uses it on a
finished (or running) run's latest checkpoint or on a zoo package that carries heads. DMC acts
on the centre crop with the mean action; Atari plays whole games greedily with epsilon 0.001
(each agent's ``act(obs, sample=False)``). Videos are at render resolution: the 100x100 DMC
frames, or the 210x160 Atari screen. GIF needs nothing more than Pillow (matplotlib's
dependency); MP4 needs imageio with its ffmpeg plugin (``pip install imageio[ffmpeg]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import LeverError

EVAL_SEED = 10_000_000  # evaluation episodes never share a seed with training episodes


@dataclass(frozen=True)
class Evaluation:
    returns: list[float]
    frames: list[np.ndarray]  # HWC uint8 frames of the first episode (empty unless recorded)

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def evaluate(agent: Any, env: Any, episodes: int, seed: int, record: bool = False) -> Evaluation:
    """``episodes`` episodes of ``agent.act(obs, sample=False)``, seeded ``EVAL_SEED + seed*1000 +
    i``, recording the first episode's frames when asked."""
    returns: list[float] = []
    frames: list[np.ndarray] = []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + seed * 1000 + i)
        keep = record and i == 0
        if keep:
            frames.append(env.render())
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs, sample=False))
            total += reward
            done = terminated or truncated
            if keep:
                frames.append(env.render())
        returns.append(total)
    return Evaluation(returns, frames)


def write_video(frames: list[np.ndarray], path: Path, fps: int = 30) -> Path:
    """An animated GIF (Pillow) or an MP4 (imageio + ffmpeg), chosen by the file suffix."""
    path = Path(path)
    if not frames:
        raise LeverError("no frames to write: the episode was not recorded")
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{suffix}")
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(frame) for frame in frames]
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=1000 // fps,
                       loop=0)
    elif suffix == ".mp4":
        try:
            import imageio.v3 as iio

            # H.264 in yuv420p needs even sides: pad odd ones by a pixel, never rescale
            video = np.stack(frames)
            video = np.pad(video, ((0, 0), (0, video.shape[1] % 2), (0, video.shape[2] % 2),
                                   (0, 0)), mode="edge")
            iio.imwrite(tmp, video, fps=fps, codec="libx264", macro_block_size=2)
        except (ImportError, ValueError, RuntimeError) as exc:
            raise LeverError(f"writing MP4 needs imageio with ffmpeg ({exc.__class__.__name__}): "
                             f"pip install 'imageio[ffmpeg]', or write a .gif") from None
    else:
        raise LeverError(f"video {path} must end in .gif or .mp4")
    tmp.replace(path)
    return path


def load_policy(source: str, device: str = "cpu", precision: str = "auto"
                ) -> tuple[Any, Any, str]:
    """(config, agent, what was loaded) from a run directory (its latest checkpoint) or a zoo
    reference to a package with heads (hub:NAME, hf://ORG/REPO, a folder), acting in
    ``precision``."""
    from .agents import agent_for_task
    from .checkpoint import load_checkpoint
    from .run_dir import RunDir

    run = RunDir(source)
    if run.has_config():
        cfg = run.read_config().replace(device=device, precision=precision)
        checkpoint = run.latest_checkpoint()
        if checkpoint is None:
            raise LeverError(f"{run} has no checkpoint yet; evaluate it after its first one "
                             f"(every checkpoint_every steps)")
        agent, _, _ = agent_for_task(cfg, device)
        _, state = load_checkpoint(checkpoint, part="agent")
        agent.import_state(state)
        return cfg, agent, f"{checkpoint}"
    return _package_policy(source, device, precision)


def _package_policy(source: str, device: str, precision: str) -> tuple[Any, Any, str]:
    from .zoo.hub import resolve

    resolved = resolve(source, say=lambda message: None)
    cfg, agent = package_agent(resolved.package, source, {"device": device,
                                                          "precision": precision})
    return cfg, agent, resolved.describe()


def package_actor(package: Any, source: str, task: str, action_repeat: int, precision: str
                  ) -> Callable[[np.ndarray], np.ndarray]:
    """A package's own actor on ``task`` (same action space as its own), acting
    deterministically as evaluation does: what ``probe --policy`` and ``collect --policy`` roll
    out."""
    _, agent = package_agent(package, source, {"device": "cpu", "task": task,
                                               "action_repeat": action_repeat,
                                               "precision": precision})
    return lambda obs: agent.act(obs, sample=False)


def package_agent(package: Any, source: str, overrides: dict[str, Any]) -> tuple[Any, Any]:
    """The agent a package with heads was trained as (its recorded recipe, ``overrides`` on
    top, e.g. another task of the same action space), its weights loaded: what acts for ``eval``
    and for ``probe --policy``."""
    from .agents import agent_for_task
    from .envs import action_size
    from .zoo.transfer import load_into_agent, transfer_config

    if not package.has_heads:
        raise LeverError(f"{source} is an encoder without heads: it cannot act. Finetune it on a "
                         f"task first (lever-transfer finetune --from {source} --to TASK)")
    recipe = package.config.source.get("recipe")
    if not isinstance(recipe, dict):
        raise LeverError(f"{source} does not record the recipe it was trained with; evaluate "
                         f"the run it came from instead")
    cfg = transfer_config(package, source, "full", recipe, overrides)
    agent, _, space = agent_for_task(cfg, cfg.device)
    load_into_agent(agent, package, cfg, action_size(space))
    return cfg, agent
