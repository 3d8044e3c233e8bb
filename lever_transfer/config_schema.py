"""The run configuration's schema: one frozen `Config`, its fields' rules, the rules between
fields, and the typing of raw values (YAML, JSON, ``--set`` strings) into it.

Raw mappings reach `typed_values` in the one spelling the project writes (an algorithm's settings
in its section), after ``config_compat.upgrade_legacy``; finding recipes and following
``extends`` is ``config_load``'s job, and ``config`` is the module to import. Defaults are table 4
of the LeVER paper (appendix G) where it gives a value shared by all DMC tasks, else the CURL
reference code. Step counts always carry a unit (`steps.StepCount`).

This module imports neither torch nor dm_control: task names are checked by the env module.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, fields
from typing import Any, Iterable, Literal, Mapping, Union

import yaml

from .config_compat import setting_name, split_dotted, upgrade_legacy
from .errors import ConfigError
from .recipe_files import DMC_TASK, RecipeLoader, is_atari_task
from .registry import AGENTS, DEFAULT_AGENT, ENCODERS
from .settings import (
    BOOLEAN,
    POSITIVE_INT,
    POSITIVE_OR_NULL,
    Rule,
    check_fields,
    check_value,
    field_names,
    one_line,
    one_of,
    resumable_names,
    setting,
)
from .steps import StepCount, Unit


def parse_memory_size(text: str) -> int:
    """Bytes in a memory budget such as "0.03GB" (decimal units: the paper's 0.03 GB = 3e7 B)."""
    from .errors import ReplayError
    from .replay.convert import parse_memory  # numpy only: no torch, no dm_control

    try:
        return parse_memory(text)
    except ReplayError as exc:
        raise ConfigError(str(exc)) from None


def _steps(value: int, unit: Unit, resumable: bool = False) -> StepCount:
    return setting(StepCount(value, unit), _STEP_RULE, resumable)


def _memory_ok(text: str) -> bool:
    try:
        parse_memory_size(text)
    except ConfigError:
        return False
    return True


DEVICE = r"auto|cpu|cuda(?::\d+)?"
_STEP_RULE: Rule = ("{env_steps: N} or {agent_steps: N} with N > 0 (on the command line also "
                    "'60k env_steps', '10000 agent_steps', or '1.5M' meaning env steps)",
                    lambda v: True)
_TEXT: Rule = ("one line of text", one_line)
_TASK: Rule = ("a DMC task name such as 'walker_walk' or an Atari game such as 'atari:qbert'",
               lambda v: re.fullmatch(DMC_TASK, v) is not None or is_atari_task(v))


@dataclass(frozen=True)
class Config:
    """Everything one training run needs: the settings every algorithm shares, and the
    algorithm's own in ``agent`` (its recipe section, declared in ``registry.py``).

    Table 4 = LeVER paper, appendix G; CURL = its code."""

    # -- what this run is
    task: str = setting("walker_walk", _TASK)  # DMC domain_task or atari:game; envs check it
    description: str = setting("", _TEXT)     # one line: what this recipe is
    paper: str = setting("", _TEXT)           # paper figure/table it reproduces, "" if none
    algorithm: str = setting(DEFAULT_AGENT, (" | ".join(map(repr, AGENTS)), lambda v: v in AGENTS))
    encoder: str = setting("curl", (" | ".join(map(repr, ENCODERS)), lambda v: v in ENCODERS))

    # -- observations
    action_repeat: int = setting(2, POSITIVE_INT)   # env steps per agent step (table 4, per task)
    frame_stack: int = setting(3, POSITIVE_INT)     # table 4: stacked frames
    render_size: int = setting(100, POSITIVE_INT)   # table 4: observation rendering (100, 100)
    crop_size: int = setting(84, POSITIVE_INT)      # table 4: (84, 84): random crop to train
    render_quality: str = setting("paper", one_of("paper", "fast"))  # "fast": shadow map 512

    # -- schedule (step counts carry their unit)
    steps: StepCount = _steps(500000, "env_steps", True)   # section 5.1: 500K, as CURL and RAD
    init_steps: StepCount = _steps(1000, "agent_steps")    # table 4: initial steps (CURL code)
    eval_every: StepCount = _steps(10000, "agent_steps", True)  # table 4 (cartpole: 2500)
    eval_episodes: int = setting(10, POSITIVE_INT, True)   # table 4: evaluation episodes
    checkpoint_every: StepCount = _steps(10000, "agent_steps", True)  # ours, not in the paper
    checkpoint_minutes: Union[float, None] = setting(  # ours: also at the first episode end
        10.0, ("a positive number of minutes or null",  # after this many minutes; null: off
               lambda v: v is None or v > 0), True)
    snapshot_every: Union[StepCount, None] = setting(  # keep the agent's weights every N
        None, ("null or " + _STEP_RULE[0], lambda v: True))

    # -- LeVER
    lever: bool = setting(True, BOOLEAN)   # freeze at Tf and replay latents; False = baseline
    freeze_at: StepCount = _steps(60000, "agent_steps")  # Tf: table 4, walker (reference unit)
    freeze_layers: Union[int, Literal["all"]] = setting(  # "all" = convs + fc (appendix F)
        "all", ("a positive integer or 'all'", lambda v: v == "all" or v > 0))
    latent_augmentations: int = setting(4, POSITIVE_INT)  # K crops encoded per transition
    latent_dtype: str = setting("float32", one_of("float32", "float16"))  # reference: float32
    replay_capacity: Union[int, None] = setting(  # None = training agent steps (table 4)
        None, ("a positive integer or null", lambda v: v is None or v > 0))
    replay_memory: Union[str, None] = setting(  # a budget such as "0.03GB" (figure 5)
        None, ("a memory size such as '0.03GB' or null", lambda v: v is None or _memory_ok(v)))
    reward_clip: Union[float, None] = setting(None, POSITIVE_OR_NULL)  # stored clipped (Atari: 1)

    # -- transfer (finetune from a zoo encoder; section 5.5, appendix C)
    pretrained: Union[str, None] = setting(  # hub:NAME, hf://ORG/REPO or a folder
        None, ("an encoder reference (hub:NAME, hf://ORG/REPO, a folder) or null",
               lambda v: v is None or (one_line(v) and v.strip() != "")))
    transfer: str = setting("encoder", one_of("encoder", "full"))  # "full": heads too (task)

    # -- networks and updates every algorithm has (table 4 values; Atari recipes set table 5's)
    batch_size: int = setting(128, POSITIVE_INT)     # table 4 (cheetah: 512)
    hidden_dim: int = setting(1024, POSITIVE_INT)    # table 4: hidden units (MLP)
    feature_dim: int = setting(50, POSITIVE_INT)     # table 4: latent dimension (encoder fc)
    num_filters: int = setting(32, POSITIVE_INT)     # table 4: filters per conv
    num_conv_layers: int = setting(4, POSITIVE_INT)  # table 4: convolutional layers (curl)
    discount: float = setting(0.99, ("a number strictly between 0 and 1", lambda v: 0 < v < 1))
    updates_per_step: int = setting(1, POSITIVE_INT)  # table 4: updates per training step

    # -- execution (ours)
    seed: int = setting(0, ("an integer in 0 .. 2**32-1", lambda v: 0 <= v < 2**32))
    device: str = setting("auto", ("'auto' | 'cpu' | 'cuda' | 'cuda:N'",  # "auto": cuda if any
                                   lambda v: re.fullmatch(DEVICE, v) is not None), resumable=True)
    channels_last: bool = setting(True, BOOLEAN)     # faster convs on CPU (notes/performance.md)
    precision: str = setting("auto", one_of("auto", "fp32", "bf16"), resumable=True)  # bf16
    #   autocast where the hardware multiplies bf16 natively (precision.py); a run records the
    #   one it resolved to, and resumes under another with --set precision=...
    tensorboard: bool = setting(False, BOOLEAN, True)  # also log to RUN_DIR/tensorboard

    # -- the algorithm's own settings: an instance of its registry entry's settings class
    agent: Any = None

    def __post_init__(self) -> None:
        check_fields(self)
        settings = AGENTS[self.algorithm].settings
        if self.agent is None:
            object.__setattr__(self, "agent", settings())
        elif type(self.agent) is not settings:
            raise ConfigError(f"agent settings {type(self.agent).__name__} do not belong to "
                              f"algorithm={self.algorithm!r} (expected {settings.__name__})")
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
        """A new Config with `changes` (typed values; the algorithm's own settings by their
        names too, e.g. ``critic_lr=2e-4``); validated like any other."""
        algorithm = changes.get("algorithm", self.algorithm)
        agent = changes.pop("agent", None)
        if agent is None:
            agent = self.agent if algorithm == self.algorithm else AGENTS[algorithm].settings() \
                if algorithm in AGENTS else None
        own = {}
        for key in list(changes):
            if key not in FIELD_NAMES:
                own[own_setting(key, algorithm, "replace()", "argument")] = changes.pop(key)
        if own:
            agent = dataclasses.replace(agent, **own)
        return dataclasses.replace(self, agent=agent, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-able dict; step counts as `{unit: value}`; the algorithm's own
        settings as a section named after it."""
        out = {name: _plain(getattr(self, name)) for name in FIELD_NAMES}
        out[self.algorithm] = dataclasses.asdict(self.agent)
        return out

    def to_yaml(self) -> str:
        """`to_dict()` as YAML, in field order."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "config dict") -> Config:
        """Strict inverse of `to_dict` (unknown keys refused; missing keys take defaults).

        Configs written by earlier versions (0.1's one flat mapping) still load: what they
        spelled otherwise is rewritten by ``config_compat.upgrade_legacy`` first."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{origin} must be a mapping of config keys, "
                              f"got {type(data).__name__}")
        algorithm = algorithm_of(data, origin)
        data = upgrade_legacy(data, algorithm, "written")
        return build(*typed_values(data, algorithm, origin, "config key"))


def _plain(value: Any) -> Any:
    return value.to_mapping() if isinstance(value, StepCount) else value


def _check_consistency(c: Config) -> None:
    """Rules that involve more than one field."""
    entry = AGENTS[c.algorithm]
    if c.crop_size > c.render_size:
        raise ConfigError(f"crop_size={c.crop_size} is larger than render_size={c.render_size}; "
                          f"set crop_size <= render_size")
    if c.replay_capacity is not None and c.replay_memory is not None:
        raise ConfigError(f"replay_capacity={c.replay_capacity} and replay_memory="
                          f"{c.replay_memory!r} are both set; they are mutually exclusive: set one "
                          f"to null (e.g. --set replay_memory=null)")
    suite = "atari" if is_atari_task(c.task) else "dmc"
    if entry.suite != suite:
        fits = ", ".join(repr(n) for n, e in AGENTS.items() if e.suite == suite)
        raise ConfigError(f"algorithm={c.algorithm!r} does not play {c.task!r}: "
                          f"{'Atari games' if suite == 'atari' else 'DMC tasks'} use {fits}; "
                          f"start from a packaged recipe (`lever-transfer recipes`) or set "
                          f"algorithm")
    if suite == "atari" and (c.frame_stack, c.render_size, c.crop_size, c.action_repeat,
                             c.latent_augmentations) != (4, 84, 84, 1, 1):
        raise ConfigError("Atari observations are fixed by the preprocessing (table 5): set "
                          "frame_stack=4, render_size=84, crop_size=84, action_repeat=1 (frame "
                          "skip 4 is part of the environment) and latent_augmentations=1 (no "
                          "augmentation)")
    if c.encoder not in entry.encoders:
        raise ConfigError(f"encoder={c.encoder!r} does not fit algorithm={c.algorithm!r}: use "
                          f"{' or '.join(repr(e) for e in entry.encoders)}")
    for key in _STEP_KEYS:
        count = getattr(c, key)
        if count is not None and c.agent_steps(count) < 1:
            raise ConfigError(f"{key}={count} is less than one agent step at action_repeat="
                              f"{c.action_repeat}; use at least {c.action_repeat} env_steps")
    if c.lever and not c.pretrained and c.agent_steps(c.freeze_at) >= c.agent_steps(c.steps):
        raise ConfigError(f"freeze_at={c.freeze_at} is not before the end of training "
                          f"(steps={c.steps}, action_repeat={c.action_repeat}); lower freeze_at "
                          f"or set lever=false for the {entry.baseline} baseline")


_HINTS: dict[str, Any] = typing.get_type_hints(Config)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Config) if f.name != "agent")
_STEP_KEYS = tuple(k for k in FIELD_NAMES if _HINTS[k] in (StepCount, Union[StepCount, None]))
assert all("rule" in f.metadata for f in fields(Config) if f.name != "agent")


# ---------------------------------------------------------------- raw values -> typed values

def _suggest(key: object, names: Iterable[str]) -> str:
    names = list(names)
    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(names)}"


def resumable_keys(cfg: Config) -> tuple[str, ...]:
    """What ``resume --set`` may change: settings the checkpoint does not depend on (the
    schedule's length and cadence, learning rates and the like, the device)."""
    return (*resumable_names(Config), *resumable_names(type(cfg.agent)))


def canonical_key(cfg: Config, key: str, origin: str = "--set") -> str:
    """A ``--set`` key as ``cfg`` names it: shared fields as they are, the algorithm's own by
    their current name (``ALGORITHM.NAME`` and old aliases resolved, ``config_compat``)."""
    if key in FIELD_NAMES:
        return key
    section, name = split_dotted(key)
    if section is not None and section != cfg.algorithm:
        raise ConfigError(f"--set {key}: this run's algorithm is {cfg.algorithm}")
    return own_setting(name, cfg.algorithm, origin, "override key")


def own_setting(key: str, algorithm: str, origin: str, what: str) -> str:
    """The current name of ``algorithm``'s setting ``key`` (its own name or an old alias);
    anything else is `not_a_setting`."""
    name = setting_name(key, algorithm)
    if name is None:
        raise not_a_setting(key, algorithm, origin, what)
    return name


def not_a_setting(key: object, algorithm: str, origin: str, what: str) -> ConfigError:
    """One error line for a key that is no setting of ``algorithm``: the algorithm whose
    setting it is, or the closest valid key."""
    entry = AGENTS[algorithm]
    own = field_names(entry.settings)
    owners = [n for n, e in AGENTS.items() if key in field_names(e.settings)]
    if owners:
        return ConfigError(f"'{key}' in {origin} is a setting of {' and '.join(owners)}, not of "
                           f"algorithm={algorithm!r}; {entry.label}'s own settings: "
                           f"{', '.join(own)}")
    return ConfigError(f"unknown {what} {key!r} in {origin}; "
                       f"{_suggest(key, (*FIELD_NAMES, *own))}")


def algorithm_of(data: Mapping[str, Any], origin: str, inherited: str | None = None) -> str:
    """The algorithm a raw mapping trains (its own ``algorithm``, else ``inherited``)."""
    algorithm = data.get("algorithm", inherited or DEFAULT_AGENT)
    return check_value(Config, "algorithm", algorithm, f" in {origin}")


Values = tuple[dict[str, Any], dict[str, dict[str, Any]]]  # (shared, sections by algorithm)


def typed_values(data: Mapping[str, Any], algorithm: str, origin: str, what: str,
                 cli: bool = False) -> Values:
    """Typed shared values and per-algorithm sections of one mapping in the section spelling
    (``config_compat.upgrade_legacy`` has rewritten the others); any other key is refused
    (``algorithm``: whose settings the error names)."""
    shared: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key in FIELD_NAMES:
            shared[key] = coerce(key, value, f" in {origin}", cli)
        elif key in AGENTS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{key}' in {origin} must be a mapping of {key}'s settings, "
                                  f"got {value!r}")
            where = f"{origin} ({key} section)"
            own = field_names(AGENTS[key].settings)
            sections[key] = {}
            for name, v in value.items():
                if name not in own:
                    raise not_a_setting(name, key, where, what)
                sections[key][name] = _coerce_agent(key, name, v, f" in {where}", cli)
        else:
            raise not_a_setting(key, algorithm, origin, what)
    return shared, sections


def build(shared: Mapping[str, Any], sections: Mapping[str, Mapping[str, Any]]) -> Config:
    """The Config of typed values: the algorithm's own section, other sections ignored."""
    algorithm = shared.get("algorithm", DEFAULT_AGENT)
    agent = AGENTS[algorithm].settings(**sections.get(algorithm, {}))
    return Config(**shared, agent=agent)


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


def coerce(key: str, value: Any, where: str, cli: bool) -> Any:
    """A shared field's raw value typed and checked (``cli``: a ``--set`` string)."""
    if cli:
        value = _override_value(key, value, _HINTS[key])
    if key in _STEP_KEYS:
        value = _to_step(key, value, where, cli)
    return check_value(Config, key, value, where)


def _coerce_agent(algorithm: str, key: str, value: Any, where: str, cli: bool) -> Any:
    settings = AGENTS[algorithm].settings
    if cli:
        value = _override_value(key, value, typing.get_type_hints(settings)[key])
    return check_value(settings, key, value, where)


def _override_value(key: str, raw: Any, hint: Any) -> Any:
    """A `--set` value: strings go through YAML, except text for str fields and step counts."""
    if not isinstance(raw, str):
        return raw
    try:
        parsed = yaml.load(raw, Loader=RecipeLoader)
    except yaml.YAMLError:
        parsed = raw
    if key in _STEP_KEYS and not isinstance(parsed, Mapping):
        return None if parsed is None else raw
    if hint is str and not isinstance(parsed, str):
        return raw.strip()
    return parsed
