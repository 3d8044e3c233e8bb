"""What the toolkit can build, by name: encoders, agents and the heads their packages carry.

Config validation, zoo packages, error messages and the tests all read these tables, so adding
an encoder or an algorithm is one entry here plus its module. An agent's entry also declares
its own settings (the recipe section named after it, e.g. ``sac_curl: {critic_lr: 2e-4}``), each
field with its default and its rule; the agent module (``agents/NAME.py``) owns everything the
algorithm does. Nothing here imports torch: classes are named as ``module:Class`` and imported
when first built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from .errors import ConfigError
from .settings import (
    ADAM_BETA,
    ANY_NUMBER,
    BOOLEAN,
    EMA_RATE,
    POSITIVE,
    POSITIVE_INT,
    POSITIVE_OR_NULL,
    UNIT_INTERVAL,
    check_fields,
    setting,
)

# channels per frame of each suite's observations (DMC renders RGB, Atari preprocesses to gray)
SUITE_CHANNELS = {"dmc": 3, "atari": 1}


@dataclass(frozen=True)
class EncoderEntry:
    name: str
    cls: str               # module:Class, built by ``Class.build(obs_shape, **architecture)``
    summary: str


ENCODERS: dict[str, EncoderEntry] = {e.name: e for e in (
    EncoderEntry("curl", "lever_transfer.encoders:CurlEncoder",
                 "CURL/SAC-AE: 3x3 convs (first stride 2) + fc + LayerNorm (tables 2, 4)"),
    EncoderEntry("impala", "lever_transfer.encoders:ImpalaEncoder",
                 "IMPALA ResNet, 15 convs + fc (figure 6(b))"),
    EncoderEntry("der", "lever_transfer.encoders:DataEfficientEncoder",
                 "data-efficient Rainbow: two 5x5 stride-5 convs -> 576 (table 3)"),
)}

# what ``--transfer full`` loads: agents whose heads are of one kind can hand them to each other
HEAD_KINDS = {
    "sac": "SAC actor (tanh-Gaussian) + twin Q critic + temperature",
    "sac_tanh": "SAC actor + twin Q critic reading tanh(latent) (DrQ)",
    "dueling_c51": "dueling noisy C51 Q head (Rainbow)",
}


# ---------------------------------------------------------------- agents' own settings

def learning_rate(default: float) -> Any:
    """An optimizer's learning rate: positive, and ``resume --set`` may lower it."""
    return setting(default, POSITIVE, resumable=True)


def _log_std_bounds(s: Any) -> None:
    if s.actor_log_std_min >= s.actor_log_std_max:
        raise ConfigError(f"actor_log_std_min={s.actor_log_std_min} must be below "
                          f"actor_log_std_max={s.actor_log_std_max}")


@dataclass(frozen=True)
class SacCurlSettings:
    """SAC + CURL: table 4 of the LeVER paper (appendix G), the CURL code where it is silent."""

    critic_lr: float = learning_rate(1e-3)               # table 4 (cheetah: 2e-4)
    actor_lr: float = learning_rate(1e-3)                # table 4 (cheetah: 2e-4)
    encoder_lr: float = learning_rate(1e-3)              # table 4: CURL's update (cheetah: 2e-4)
    alpha_lr: float = learning_rate(1e-4)                # table 4: temperature learning rate
    alpha_beta1: float = setting(0.5, ADAM_BETA)         # table 4: temperature Adam (.5, .999)
    init_temperature: float = setting(0.1, POSITIVE)     # table 4
    critic_tau: float = setting(0.01, EMA_RATE)          # table 4: Q function EMA
    encoder_tau: float = setting(0.05, EMA_RATE)         # table 4: encoder EMA
    actor_update_freq: int = setting(2, POSITIVE_INT)    # CURL code: actor every N updates
    critic_target_update_freq: int = setting(2, POSITIVE_INT)  # table 4
    actor_log_std_min: float = setting(-10.0, ANY_NUMBER)      # CURL code
    actor_log_std_max: float = setting(2.0, ANY_NUMBER)        # CURL code
    multi_step: int = setting(1, POSITIVE_INT)           # n-step returns (CURL: 1)

    def __post_init__(self) -> None:
        check_fields(self)
        _log_std_bounds(self)


@dataclass(frozen=True)
class RainbowSettings:
    """Data-efficient Rainbow: table 5 (appendix H), the reference code where it is silent."""

    lr: float = learning_rate(1e-4)                      # reference code (table 5's 1e-3 row is
    #                                                      an unused "alpha"; the code ran 1e-4)
    encoder_lr: float = learning_rate(1e-4)              # reference code: one Adam, one lr
    adam_eps: float = setting(1.5e-4, POSITIVE, resumable=True)              # reference code
    max_grad_norm: float | None = setting(  # reference code; resume may change it
        10.0, POSITIVE_OR_NULL, resumable=True)
    multi_step: int = setting(20, POSITIVE_INT)          # table 5: multi-step returns
    atoms: int = setting(51, ("an integer >= 2", lambda v: v >= 2))  # C51
    v_min: float = setting(-10.0, ANY_NUMBER)            # C51 support
    v_max: float = setting(10.0, ANY_NUMBER)
    noisy_sigma: float = setting(0.1, POSITIVE)          # noisy nets' sigma0
    target_update_period: int = setting(2000, POSITIVE_INT)  # table 5: updates between copies
    eval_epsilon: float = setting(0.001, UNIT_INTERVAL)  # reference code: evaluation epsilon
    prioritized_replay: bool = setting(False, BOOLEAN)   # the reference LeVER code ran uniform
    priority_exponent: float = setting(0.5, UNIT_INTERVAL)  # omega: priority = loss ** omega
    priority_weight: float = setting(0.4, UNIT_INTERVAL)    # beta at the start, annealed to 1

    def __post_init__(self) -> None:
        check_fields(self)
        if self.v_min >= self.v_max:
            raise ConfigError(f"v_min={self.v_min} must be below v_max={self.v_max}")


@dataclass(frozen=True)
class DrQSettings:
    """DrQ (Kostrikov, Yarats, Fergus 2020): the defaults of its code, denisyarats/drq's
    ``config.yaml`` and ``drq.py``."""

    critic_lr: float = learning_rate(1e-3)               # config.yaml: lr 1e-3 for all three
    actor_lr: float = learning_rate(1e-3)
    alpha_lr: float = learning_rate(1e-3)                # log_alpha_optimizer, same lr
    alpha_beta1: float = setting(0.9, ADAM_BETA)         # drq.py: Adam's default betas
    init_temperature: float = setting(0.1, POSITIVE)     # config.yaml
    critic_tau: float = setting(0.01, EMA_RATE)          # config.yaml: critic_tau
    encoder_tau: float = setting(0.01, EMA_RATE)         # drq.py: the critic's soft update
    #                                                      moves its encoder at critic_tau
    actor_update_freq: int = setting(2, POSITIVE_INT)    # config.yaml: actor_update_frequency
    critic_target_update_freq: int = setting(2, POSITIVE_INT)  # critic_target_update_frequency
    actor_log_std_min: float = setting(-10.0, ANY_NUMBER)      # config.yaml: log_std_bounds
    actor_log_std_max: float = setting(2.0, ANY_NUMBER)
    image_pad: int = setting(4, ("an integer >= 0", lambda v: v >= 0))  # random shift +-4 px
    target_augmentations: int = setting(2, POSITIVE_INT)  # K: next-obs shifts averaged in y
    q_augmentations: int = setting(2, POSITIVE_INT)       # M: obs shifts in the critic loss

    def __post_init__(self) -> None:
        check_fields(self)
        _log_std_bounds(self)


# ---------------------------------------------------------------- agents

@dataclass(frozen=True)
class AgentEntry:
    name: str
    label: str               # how reports and cards name it
    baseline: str            # what a run without LeVER is called
    cls: str                 # module:Class of the agent (``agents/``)
    settings: type           # its recipe section
    suite: Literal["dmc", "atari"]
    encoders: tuple[str, ...]  # encoders it can train; the first is its default
    head_kind: str           # a key of HEAD_KINDS
    # names earlier versions gave its settings: read, never written (config_compat.py)
    aliases: dict[str, str] = field(default_factory=dict)

    def agent_class(self) -> Any:
        return _import(self.cls)

    def default_settings(self) -> Any:
        return self.settings()


AGENTS: dict[str, AgentEntry] = {e.name: e for e in (
    AgentEntry("sac_curl", "SAC+CURL", "CURL", "lever_transfer.agents.sac_curl:SacCurlAgent",
               SacCurlSettings, "dmc", ("curl", "impala"), "sac"),
    AgentEntry("rainbow", "Rainbow", "Rainbow", "lever_transfer.agents.rainbow:RainbowAgent",
               RainbowSettings, "atari", ("der", "impala"), "dueling_c51",
               aliases={"critic_lr": "lr", "critic_target_update_freq": "target_update_period"}),
    AgentEntry("drq", "DrQ", "DrQ", "lever_transfer.agents.drq:DrQAgent",
               DrQSettings, "dmc", ("curl", "impala"), "sac_tanh"),
)}


def describe_agents(attribute: str = "label") -> str:
    """What the registry trains, for help texts: e.g. "SAC+CURL or DrQ on DMC, Rainbow on Atari"
    (``attribute="baseline"``: the names of the runs without LeVER)."""
    by_suite: dict[str, list[str]] = {}
    for entry in AGENTS.values():
        names = by_suite.setdefault(entry.suite, [])
        if getattr(entry, attribute) not in names:
            names.append(getattr(entry, attribute))
    suites = {"dmc": "DMC", "atari": "Atari"}
    return ", ".join(f"{' or '.join(names)} on {suites[suite]}"
                     for suite, names in by_suite.items())


DEFAULT_AGENT = "sac_curl"  # what a recipe without ``algorithm`` trains (the paper's DMC agent)


def agent_entry(name: str) -> AgentEntry:
    try:
        return AGENTS[name]
    except KeyError:
        raise ConfigError(f"unknown algorithm {name!r}; choose one of "
                          f"{', '.join(sorted(AGENTS))}") from None


def heads_agent(heads: Mapping[str, Any]) -> AgentEntry | None:
    """The agent whose heads a package's ``heads`` spec describes (``zoo.config.upgrade`` names
    the kind of packages written before kinds were), or None for a kind this version lacks."""
    kind = heads["kind"]
    return next((entry for entry in AGENTS.values() if entry.head_kind == kind), None)


def encoder_entry(name: str) -> EncoderEntry:
    try:
        return ENCODERS[name]
    except KeyError:
        raise ConfigError(f"unknown encoder {name!r}; choose one of "
                          f"{', '.join(sorted(ENCODERS))}") from None


def _import(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def encoder_class(name: str) -> Any:
    return _import(encoder_entry(name).cls)
