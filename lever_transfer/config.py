"""Run configuration: one frozen `Config`, loaded one way from YAML recipes, never mutated.

A recipe is a YAML mapping of `Config` fields, optionally `extends: OTHER` (a recipe name or a path
relative to the file; `recipe_files` finds and reads them). Defaults are table 4 of the LeVER
paper (appendix G) where it gives a value shared by all DMC tasks, else the CURL reference code.
Step counts always carry a unit (`steps.StepCount`).

This module imports neither torch nor dm_control: task names are checked by the env module.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable, Literal, Mapping, Union

import yaml

from .errors import ConfigError
from .recipe_files import (  # noqa: F401  (atari_game, is_atari_task: re-exported)
    DMC_TASK,
    RecipeFile,
    RecipeLoader,
    atari_game,
    is_atari_task,
    locate,
    read_yaml,
    recipe_names,
    resolve_extends,
)
from .steps import UNITS, StepCount, Unit  # noqa: F401  (UNITS: re-exported)


def parse_memory_size(text: str) -> int:
    """Bytes in a memory budget such as "0.03GB" (decimal units: the paper's 0.03 GB = 3e7 B)."""
    from .errors import ReplayError
    from .replay.convert import parse_memory  # numpy only: no torch, no dm_control

    try:
        return parse_memory(text)
    except ReplayError as exc:
        raise ConfigError(str(exc)) from None


def _steps(value: int, unit: Unit) -> StepCount:
    return field(default=StepCount(value, unit))


@dataclass(frozen=True)
class Config:
    """Everything one training run needs. Table 4 = LeVER paper, appendix G; CURL = its code."""

    # -- what this run is
    task: str = "walker_walk"           # DMC domain_task or atari:game; the env module checks it
    description: str = ""               # one line: what this recipe is
    paper: str = ""                     # paper figure/table this recipe reproduces, "" if none
    algorithm: str = "sac_curl"         # "sac_curl" (DMC, table 4) | "rainbow" (Atari, table 5)
    encoder: str = "curl"               # "curl" (table 4) | "impala" (figure 6(b)) | "der" (Atari)

    # -- observations
    action_repeat: int = 2              # env steps per agent step; table 4 varies it per task
    frame_stack: int = 3                # table 4: stacked frames
    render_size: int = 100              # table 4: observation rendering (100, 100)
    crop_size: int = 84                 # table 4: (84, 84); random crop to train, centre to act
    render_quality: str = "paper"       # "paper" (MuJoCo default) | "fast" (shadow map 512)

    # -- schedule (step counts carry their unit)
    steps: StepCount = _steps(500000, "env_steps")         # section 5.1: 500K, as CURL and RAD
    init_steps: StepCount = _steps(1000, "agent_steps")    # table 4: initial steps (CURL code)
    eval_every: StepCount = _steps(10000, "agent_steps")   # table 4 (cartpole: 2500)
    eval_episodes: int = 10                                # table 4: evaluation episodes
    checkpoint_every: StepCount = _steps(10000, "agent_steps")  # ours, not in the paper
    checkpoint_minutes: Union[float, None] = 10.0  # ours: also at the first episode end after
    #                                   this many minutes, so a slow run loses little; null: off
    snapshot_every: Union[StepCount, None] = None  # keep the agent's weights every N (pretrain)

    # -- LeVER
    lever: bool = True                  # freeze at Tf and replay latents; False = CURL baseline
    freeze_at: StepCount = _steps(60000, "agent_steps")  # Tf: table 4, walker (reference unit)
    freeze_layers: Union[int, Literal["all"]] = "all"   # "all" = convs + fc (appendix F); N = 1..N
    latent_augmentations: int = 4       # K crops encoded per transition (reference runs: 4)
    latent_dtype: str = "float32"       # "float32" (reference code) | "float16"
    replay_capacity: Union[int, None] = None  # None = training agent steps (table 4, figure 2)
    replay_memory: Union[str, None] = None    # budget such as "0.03GB" (figure 5); or capacity

    # -- transfer (finetune from a zoo encoder; section 5.5, appendix C)
    pretrained: Union[str, None] = None  # hub:NAME, hf://ORG/REPO or a folder; frozen from step 0
    transfer: str = "encoder"           # "encoder" (domain transfer: new heads) | "full" (task)

    # -- SAC + CURL (table 4; the CURL code where table 4 is silent)
    batch_size: int = 128               # table 4 (cheetah: 512)
    hidden_dim: int = 1024              # table 4: hidden units (MLP)
    feature_dim: int = 50               # table 4: latent dimension (encoder fc output)
    num_filters: int = 32               # table 4: filters per conv
    num_conv_layers: int = 4            # table 4: convolutional layers (curl encoder)
    critic_lr: float = 1e-3             # table 4 (cheetah: 2e-4)
    actor_lr: float = 1e-3              # table 4 (cheetah: 2e-4)
    encoder_lr: float = 1e-3            # table 4, CURL contrastive update (cheetah: 2e-4)
    alpha_lr: float = 1e-4              # table 4: temperature learning rate
    alpha_beta1: float = 0.5            # table 4: temperature Adam betas (.5, .999)
    init_temperature: float = 0.1       # table 4
    discount: float = 0.99              # table 4
    critic_tau: float = 0.01            # table 4: Q function EMA
    encoder_tau: float = 0.05           # table 4: encoder EMA
    actor_update_freq: int = 2          # CURL code: actor update every N critic updates
    critic_target_update_freq: int = 2  # table 4
    actor_log_std_min: float = -10.0    # CURL code
    actor_log_std_max: float = 2.0      # CURL code
    updates_per_step: int = 1           # table 4: updates per training step

    # -- data-efficient Rainbow (table 5; the data-efficient Rainbow code where it is silent)
    multi_step: int = 1                 # n-step returns: 1 for SAC, 20 for data-efficient Rainbow
    atoms: int = 51                     # C51 atoms on [v_min, v_max]
    v_min: float = -10.0                # C51 support
    v_max: float = 10.0                 # C51 support
    noisy_sigma: float = 0.1            # noisy-net sigma0
    adam_eps: float = 1e-8              # Adam epsilon (Rainbow: 1.5e-4)
    max_grad_norm: Union[float, None] = None  # gradient-norm clip (Rainbow: 10)
    reward_clip: Union[float, None] = None    # rewards stored clipped to +-this (Rainbow: 1)
    eval_epsilon: float = 0.0           # random actions when evaluating (Rainbow: 0.001)
    prioritized_replay: bool = False    # Rainbow option; the reference LeVER code ran uniform
    priority_exponent: float = 0.5      # omega: priority = loss ** omega (Rainbow code)
    priority_weight: float = 0.4        # beta at the start, annealed to 1 (Rainbow code)

    # -- execution (ours)
    seed: int = 0                       # 0 .. 2**32-1
    device: str = "auto"                # "auto" (cuda if available) | "cpu" | "cuda" | "cuda:N"
    channels_last: bool = True          # faster convs on CPU (notes/performance.md)
    tensorboard: bool = False           # also log metrics to RUN_DIR/tensorboard (optional dep)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _check(f.name, getattr(self, f.name), ""))
        _check_consistency(self)

    def agent_steps(self, count: StepCount) -> int:
        """`count` in agent steps at this config's action repeat."""
        return count.to_agent_steps(self.action_repeat)

    def env_steps(self, count: StepCount) -> int:
        """`count` in environment steps at this config's action repeat."""
        return count.to_env_steps(self.action_repeat)

    @property
    def replay_memory_bytes(self) -> int | None:
        """`replay_memory` in bytes, or None."""
        return None if self.replay_memory is None else parse_memory_size(self.replay_memory)

    def replace(self, **changes: Any) -> Config:
        """A new Config with `changes` (typed values); validated like any other."""
        for key in changes:
            _check_known(key, "replace()", "argument")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-able dict; step counts as `{unit: value}`."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_yaml(self) -> str:
        """`to_dict()` as YAML, in field order."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "config dict") -> Config:
        """Strict inverse of `to_dict` (unknown keys refused; missing keys take defaults).

        Keys that earlier versions wrote and that no longer mean anything (``RETIRED_KEYS``) are
        dropped, so old run directories and zoo packages still load."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{origin} must be a mapping of config keys, "
                              f"got {type(data).__name__}")
        data = {k: v for k, v in data.items() if k not in RETIRED_KEYS}
        return cls(**_coerce_all(data, origin, "config key", cli=False))


# Written by 0.1.0 and ignored since: `compile` (torch.compile gave no gain on the CPU update,
# benchmarks/README.md) was never wired to anything.
RETIRED_KEYS = frozenset({"compile"})


def _plain(value: Any) -> Any:
    return value.to_mapping() if isinstance(value, StepCount) else value


# ---------------------------------------------------------------- validation of single values

def _enum(*choices: str) -> tuple[str, Callable[[Any], bool]]:
    return " | ".join(repr(c) for c in choices), lambda v: v in choices


def _line(v: str) -> bool:
    return "\n" not in v and "\r" not in v


_POS_INT = ("a positive integer", lambda v: v > 0)
_POS_FLOAT = ("a positive number", lambda v: v > 0)
_STEP_RULE = ("{env_steps: N} or {agent_steps: N} with N > 0 (on the command line also "
              "'60k env_steps', '10000 agent_steps', or '1.5M' meaning env steps)", lambda v: True)
_SIZE_KEYS = ("action_repeat", "frame_stack", "render_size", "crop_size", "eval_episodes",
              "latent_augmentations", "batch_size", "hidden_dim", "feature_dim", "num_filters",
              "num_conv_layers", "actor_update_freq", "critic_target_update_freq",
              "updates_per_step", "multi_step")
_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    **{k: _POS_INT for k in _SIZE_KEYS},
    **{k: _POS_FLOAT for k in ("critic_lr", "actor_lr", "encoder_lr", "alpha_lr",
                               "init_temperature", "noisy_sigma", "adam_eps")},
    "atoms": ("an integer >= 2", lambda v: v >= 2),
    "v_min": ("a number", lambda v: True),
    "v_max": ("a number", lambda v: True),
    "max_grad_norm": ("a positive number or null", lambda v: v is None or v > 0),
    "reward_clip": ("a positive number or null", lambda v: v is None or v > 0),
    "eval_epsilon": ("a number in [0, 1]", lambda v: 0 <= v <= 1),
    "prioritized_replay": ("true or false", lambda v: True),
    "priority_exponent": ("a number in [0, 1]", lambda v: 0 <= v <= 1),
    "priority_weight": ("a number in [0, 1]", lambda v: 0 <= v <= 1),
    **{k: _STEP_RULE for k in ("steps", "init_steps", "eval_every", "checkpoint_every",
                               "freeze_at")},
    "snapshot_every": ("null or " + _STEP_RULE[0], lambda v: True),
    "checkpoint_minutes": ("a positive number of minutes or null",
                           lambda v: v is None or v > 0),
    "task": ("a DMC task name such as 'walker_walk' or an Atari game such as 'atari:qbert'",
             lambda v: re.fullmatch(DMC_TASK, v) is not None or is_atari_task(v)),
    "description": ("one line of text", _line),
    "paper": ("one line of text", _line),
    "algorithm": _enum("sac_curl", "rainbow"),
    "encoder": _enum("curl", "impala", "der"),
    "render_quality": _enum("paper", "fast"),
    "lever": ("true or false", lambda v: True),
    "freeze_layers": ("a positive integer or 'all'", lambda v: v == "all" or v > 0),
    "latent_dtype": _enum("float32", "float16"),
    "pretrained": ("an encoder reference (hub:NAME, hf://ORG/REPO, a folder) or null",
                   lambda v: v is None or (_line(v) and v.strip() != "")),
    "transfer": _enum("encoder", "full"),
    "replay_capacity": ("a positive integer or null", lambda v: v is None or v > 0),
    "replay_memory": ("a memory size such as '0.03GB' or null",
                      lambda v: v is None or _memory_ok(v)),
    "alpha_beta1": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    "discount": ("a number strictly between 0 and 1", lambda v: 0 < v < 1),
    "critic_tau": ("a number in (0, 1]", lambda v: 0 < v <= 1),
    "encoder_tau": ("a number in (0, 1]", lambda v: 0 < v <= 1),
    "actor_log_std_min": ("a number", lambda v: True),
    "actor_log_std_max": ("a number", lambda v: True),
    "seed": ("an integer in 0 .. 2**32-1", lambda v: 0 <= v < 2**32),
    "device": ("'auto' | 'cpu' | 'cuda' | 'cuda:N'",
               lambda v: re.fullmatch(r"auto|cpu|cuda(?::\d+)?", v) is not None),
    "channels_last": ("true or false", lambda v: True),
    "tensorboard": ("true or false", lambda v: True),
}


def _memory_ok(text: str) -> bool:
    try:
        parse_memory_size(text)
    except ConfigError:
        return False
    return True


def _typed(value: Any, hint: Any) -> tuple[bool, Any]:
    """(matches, normalised value) for `value` against a field's type hint."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is Union:
        for arg in typing.get_args(hint):
            ok, out = _typed(value, arg)
            if ok:
                return True, out
        return False, value
    if typing.get_origin(hint) is Literal:
        return value in typing.get_args(hint), value
    if hint is type(None):
        return value is None, value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and math.isfinite(value), float(value) if ok else value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, hint), value


def _check(key: str, value: Any, where: str) -> Any:
    """Type- and range-check one field value; return it normalised (ints become floats)."""
    accepted, ok_range = _RULES[key]
    ok, out = _typed(value, _HINTS[key])
    if not ok or not ok_range(out):
        raise ConfigError(f"invalid value for '{key}'{where}: {value!r}; expected {accepted}")
    return out


def _check_consistency(c: Config) -> None:
    """Rules that involve more than one field."""
    if c.crop_size > c.render_size:
        raise ConfigError(f"crop_size={c.crop_size} is larger than render_size={c.render_size}; "
                          f"set crop_size <= render_size")
    if c.replay_capacity is not None and c.replay_memory is not None:
        raise ConfigError(f"replay_capacity={c.replay_capacity} and replay_memory="
                          f"{c.replay_memory!r} are both set; they are mutually exclusive: set one "
                          f"to null (e.g. --set replay_memory=null)")
    atari = is_atari_task(c.task)
    if atari != (c.algorithm == "rainbow"):
        raise ConfigError(f"algorithm={c.algorithm!r} does not play {c.task!r}: Atari games use "
                          f"'rainbow' and DMC tasks 'sac_curl'; start from a packaged recipe "
                          f"(`lever-transfer recipes`) or set algorithm")
    if atari and (c.frame_stack, c.render_size, c.crop_size, c.action_repeat,
                  c.latent_augmentations) != (4, 84, 84, 1, 1):
        raise ConfigError("Atari observations are fixed by the preprocessing (table 5): set "
                          "frame_stack=4, render_size=84, crop_size=84, action_repeat=1 (frame skip "
                          "4 is part of the environment) and latent_augmentations=1 (no "
                          "augmentation)")
    if c.algorithm == "rainbow" and c.encoder == "curl" or c.algorithm == "sac_curl" \
            and c.encoder == "der":
        raise ConfigError(f"encoder={c.encoder!r} does not fit algorithm={c.algorithm!r}: use "
                          f"'der' (or 'impala') for rainbow and 'curl' or 'impala' for sac_curl")
    if c.prioritized_replay and c.algorithm != "rainbow":
        raise ConfigError("prioritized_replay is a Rainbow option; SAC+CURL samples uniformly: "
                          "set prioritized_replay=false")
    if c.v_min >= c.v_max:
        raise ConfigError(f"v_min={c.v_min} must be below v_max={c.v_max}")
    if c.actor_log_std_min >= c.actor_log_std_max:
        raise ConfigError(f"actor_log_std_min={c.actor_log_std_min} must be below "
                          f"actor_log_std_max={c.actor_log_std_max}")
    for key in _STEP_KEYS:
        count = getattr(c, key)
        if count is not None and c.agent_steps(count) < 1:
            raise ConfigError(f"{key}={count} is less than one agent step at action_repeat="
                              f"{c.action_repeat}; use at least {c.action_repeat} env_steps")
    if c.lever and not c.pretrained and c.agent_steps(c.freeze_at) >= c.agent_steps(c.steps):
        raise ConfigError(f"freeze_at={c.freeze_at} is not before the end of training "
                          f"(steps={c.steps}, action_repeat={c.action_repeat}); lower freeze_at "
                          f"or set lever=false for the plain CURL baseline")


_HINTS: dict[str, Any] = typing.get_type_hints(Config)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Config))
_STEP_KEYS = tuple(k for k in FIELD_NAMES if _HINTS[k] in (StepCount, Union[StepCount, None]))
assert set(_RULES) == set(FIELD_NAMES), "every Config field needs a rule"


# ---------------------------------------------------------------- raw values -> typed values

def _check_known(key: object, origin: str, what: str) -> None:
    if key in FIELD_NAMES:
        return
    close = difflib.get_close_matches(str(key), FIELD_NAMES, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(FIELD_NAMES)}"
    raise ConfigError(f"unknown {what} {key!r} in {origin}; {hint}")


def _to_step(key: str, value: Any, where: str, cli: bool) -> Any:
    """StepCount from a mapping; on the CLI also from strings and bare numbers (env steps)."""
    try:
        if value is None:
            return None
        if isinstance(value, Mapping):
            return StepCount.from_mapping(value)
        if cli and isinstance(value, str):
            return StepCount.parse(value)
        if cli and isinstance(value, int) and not isinstance(value, bool):
            return StepCount(value, "env_steps")
    except ConfigError as e:
        raise ConfigError(f"invalid value for '{key}'{where}: {value!r}; {e}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not cli:
        raise ConfigError(f"'{key}'{where} is a bare number ({value}); state its unit: "
                          f"{{agent_steps: {value}}} or {{env_steps: {value}}}")
    return value


def _coerce(key: str, value: Any, where: str, cli: bool) -> Any:
    if key in _STEP_KEYS:
        value = _to_step(key, value, where, cli)
    return _check(key, value, where)


def _coerce_all(data: Mapping[str, Any], origin: str, what: str, cli: bool) -> dict[str, Any]:
    for key in data:
        _check_known(key, origin, what)
    return {k: _coerce(k, v, f" in {origin}", cli) for k, v in data.items()}


def _override_value(key: str, raw: Any) -> Any:
    """A `--set` value: strings go through YAML, except text for str fields and step counts."""
    if not isinstance(raw, str):
        return raw
    try:
        parsed = yaml.load(raw, Loader=RecipeLoader)
    except yaml.YAMLError:
        parsed = raw
    if key in _STEP_KEYS and not isinstance(parsed, Mapping):
        return None if parsed is None else raw
    if _HINTS[key] is str and not isinstance(parsed, str):
        return raw.strip()
    return parsed


def parse_set_options(items: Iterable[str]) -> dict[str, str]:
    """["batch_size=32", ...] (from repeated --set) -> {"batch_size": "32"}; last one wins."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}; e.g. --set batch_size=32")
        out[key.strip()] = value
    return out


# ---------------------------------------------------------------- YAML files and recipes


def _load_chain(src: RecipeFile, chain: tuple[RecipeFile, ...] = ()) -> dict[str, Any]:
    """Typed values of `src` over those of its `extends` ancestors."""
    if src.key in {s.key for s in chain}:
        labels = " -> ".join(s.label for s in (*chain, src))
        raise ConfigError(f"recipe cycle: {labels}; remove one of these 'extends'")
    data = read_yaml(src)
    parent = data.pop("extends", None)
    own = _coerce_all(data, src.label, "recipe key", cli=False)
    if parent is None:
        return own
    return {**_load_chain(resolve_extends(parent, src), (*chain, src)), **own}


def load_config(name_or_path: str, overrides: Mapping[str, object] | None = None) -> Config:
    """Config from a recipe path, a packaged recipe name or a task name, plus `--set` overrides.

    A task name without a recipe gets `recipes/dmc/defaults.yaml` (Atari games
    `recipes/atari/atari_defaults.yaml`) with `task` set to it.
    Override values may be strings (parsed as YAML; step counts also as "60k env_steps", a bare
    number meaning env steps) or typed values.
    """
    src, task = locate(name_or_path)
    values = _load_chain(src)
    if task is not None:
        table = "table-5" if is_atari_task(task) else "table-4"
        values.update(task=task, paper="",
                      description=f"{task} on the shared {table} defaults (no recipe for it)")
    for key in overrides or {}:
        _check_known(key, "--set", "override key")
    values.update({k: _coerce(k, _override_value(k, v), " in --set", cli=True)
                   for k, v in (overrides or {}).items()})
    return Config(**values)


def list_recipes() -> list[tuple[str, str, str]]:
    """(name, paper, description) of every packaged recipe, sorted by name."""
    out = []
    for name, src in recipe_names():
        config = Config(**_load_chain(src))
        out.append((name, config.paper, config.description))
    return out
