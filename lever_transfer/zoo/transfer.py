"""Transfer from a zoo encoder (section 5.5, appendix C): check that it fits, then load it.

Two kinds, as in the paper: domain transfer (``transfer: encoder``, e.g. walker_stand ->
hopper_hop) loads only the encoder (the critic's convs + fc and the actor's fc) and trains new
heads; task transfer (``transfer: full``, e.g. walker_stand -> walker_walk) loads the heads too,
which needs the same action space and runs the agent they belong to. Either way the target takes
the encoder's architecture and observation spec (what its weights fix). The frozen layers are
then frozen by the trainer at step 0. Atari encoders (data-efficient Rainbow) transfer the same
way across games: the observation spec is the same for every game, and ``--transfer encoder``
trains new heads for another action set.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..config import Config, is_atari_task, load_config
from ..errors import LeverError
from ..registry import SUITE_CHANNELS, agent_entry, heads_agent
from .package import EncoderPackage

ARCHITECTURE_KEYS = ("encoder", "feature_dim", "num_filters", "num_conv_layers")
OBSERVATION_KEYS = ("frame_stack", "render_size", "crop_size")


def architecture_overrides(package: EncoderPackage) -> dict[str, Any]:
    """Recipe values that must come from the package: the encoder's architecture (and heads)."""
    config = package.config
    return {"encoder": config.architecture, "feature_dim": config.feature_dim,
            "num_filters": config.num_filters, "num_conv_layers": config.num_conv_layers}


def observation_overrides(package: EncoderPackage) -> dict[str, Any]:
    """Recipe values the encoder's inputs fix: frame stack, render and crop size. A DrQ encoder
    reads whole 84-pixel renders, a SAC+CURL one 84-pixel crops of 100-pixel renders; the target
    takes the encoder's, as it takes its architecture, unless the user sets them (then
    ``check_fits`` refuses a mismatch). The frozen layers never train, so this only changes
    what augmentation varies in their latents: a SAC+CURL target of an 84-pixel DrQ encoder has
    nothing to crop (no augmentation), the price of reading the frames the encoder learned on."""
    return {key: getattr(package.observation, key) for key in OBSERVATION_KEYS}


def check_suite(package: EncoderPackage, task: str) -> None:
    """Refuse an Atari encoder (grayscale frames) for a DMC task and a DMC one (RGB) for Atari,
    before any setting is taken from it."""
    atari_encoder = package.observation.channels == 1
    if atari_encoder != is_atari_task(task):
        kinds = ("an Atari encoder (4 grayscale 84x84 frames)", "a DMC encoder (RGB frames)")
        source = package.config.task or "its source tasks"
        raise LeverError(f"encoder {package.path.name} is {kinds[not atari_encoder]}, trained on "
                         f"{source}; it cannot read {task}'s observations: pick an encoder of "
                         f"the same suite (lever-transfer zoo list)")


def transfer_config(package: EncoderPackage, source: str, transfer: str,
                    recipe: str | Mapping[str, Any],
                    overrides: Mapping[str, object] | None = None) -> Config:
    """The config of a run that starts from ``package`` (referenced as ``source``): ``recipe``
    (a recipe name, path or task: finetune's target; or the recipe dict a package records:
    eval's), with the encoder's architecture and observation spec (and, for ``transfer:
    full``, its heads' width and agent: DrQ heads train on as DrQ) taken from the package, then
    ``overrides`` (``--set`` strings or typed values) on top."""
    values: dict[str, object] = {**architecture_overrides(package),
                                 **observation_overrides(package), "pretrained": source,
                                 "transfer": transfer}
    if transfer == "full" and package.has_heads:
        heads = package.config.heads or {}
        values["hidden_dim"] = heads["hidden_dim"]
        owner = heads_agent(heads)
        if owner is not None:  # the heads go on training in the agent they were trained in
            values["algorithm"] = owner.name
    values.update(overrides or {})
    if isinstance(recipe, str):
        check_suite(package, load_config(recipe).task)  # before any setting is taken from it
        return load_config(recipe, values)
    return Config.from_dict({**recipe, **values}, origin=f"{source} config.json")


def check_fits(package: EncoderPackage, cfg: Config, action_dim: int) -> None:
    """Refuse, saying what differs, an encoder whose observation spec or heads do not fit."""
    obs, name = vars(package.observation), package.path.name
    entry = agent_entry(cfg.algorithm)
    wanted = {"channels": SUITE_CHANNELS[entry.suite],
              **{key: getattr(cfg, key) for key in OBSERVATION_KEYS}}
    keys = [k for k, v in wanted.items() if obs[k] != v]
    if keys:
        differ = "; ".join(f"{k} {obs[k]} vs {wanted[k]}" for k in keys)
        fix = " ".join(f"--set {k}={obs[k]}" for k in keys if k != "channels")
        raise LeverError(f"encoder {name} does not fit {cfg.task}'s observations ({differ}: "
                         f"encoder vs this run); " + (f"use the encoder's values ({fix}) or pick "
                                                      f"another encoder" if fix else
                                                      "pick an encoder of this task's suite"))
    arch = architecture_overrides(package)
    mismatched = [f"{k} {arch[k]} vs {getattr(cfg, k)}" for k in ARCHITECTURE_KEYS
                  if arch[k] != getattr(cfg, k)]
    if mismatched:
        raise LeverError(f"encoder {name} has another architecture ({'; '.join(mismatched)}); "
                         f"drop those overrides: finetune takes them from the encoder")
    if cfg.transfer != "full":
        return
    if not package.has_heads:
        raise LeverError(f"encoder {name} has no actor/critic heads, so --transfer full cannot "
                         f"load them; use --transfer encoder (new heads)")
    heads = package.config.heads or {}
    kind = entry.head_kind
    if heads["kind"] != kind:
        raise LeverError(f"--transfer full: encoder {name} carries {heads['kind']} "
                         f"heads, {cfg.algorithm} needs {kind}; use --transfer encoder")
    if heads["action_dim"] != action_dim:
        source = package.config.task or "the source task"
        raise LeverError(f"--transfer full needs the same action space: {source} has "
                         f"{heads['action_dim']} actions, {cfg.task} has {action_dim}; use "
                         f"--transfer encoder (domain transfer, new heads)")
    if heads["hidden_dim"] != cfg.hidden_dim:
        raise LeverError(f"--transfer full: the heads have hidden_dim {heads['hidden_dim']}, this "
                         f"run {cfg.hidden_dim}; set --set hidden_dim={heads['hidden_dim']}")


def learned_spacing(package: EncoderPackage, task: str) -> int | None:
    """The action repeat the encoder saw ``task``'s frames at: its source run's, or, for an
    encoder pretrained offline on several tasks, that task's in its data (None where unknown:
    a task outside that data, or an older package that recorded none)."""
    config = package.config
    if config.is_offline:
        spacing = (config.source.get("tasks") or {}).get(task, {}).get("action_repeat")
        return None if spacing is None else int(spacing)
    return package.observation.action_repeat


def frame_spacing_warning(package: EncoderPackage, cfg: Config) -> str | None:
    """What to tell a user whose target runs at another action repeat than the encoder learned.

    The stacked frames then lie another number of env steps apart than the encoder learned
    from, so motion between them looks faster or slower; the tensors still fit, and a user may
    mean it (a repeat-4 source for a repeat-2 task), so this is said, not refused. An encoder
    trained offline on several tasks is held to the target task's spacing in its data, if it
    saw that task."""
    repeat = learned_spacing(package, cfg.task)
    if repeat is None or repeat == cfg.action_repeat:
        return None
    what = f"{cfg.task}'s frames" if package.config.is_offline else "frames"
    return (f"encoder {package.path.name} learned from {what} {repeat} env steps apart (action "
            f"repeat {repeat}), this run steps {cfg.action_repeat} at a time: motion between its "
            f"stacked frames will look different; --set action_repeat={repeat} matches the source")


def load_into_agent(agent: Any, package: EncoderPackage, cfg: Config, action_dim: int) -> None:
    """Copy the package's weights into a fresh agent (online and target networks; the agent
    knows its own parameter names); ``action_dim`` is the action count of a discrete task."""
    check_fits(package, cfg, action_dim)
    agent.load_package(package, full=cfg.transfer == "full")
