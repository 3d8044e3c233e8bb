"""Earlier spellings of an algorithm's own settings, rewritten into the one the project writes.

The project writes an algorithm's settings in one place: the section named after it
(``sac_curl: {critic_lr: 2.0e-4}``, what ``Config.to_dict`` writes and every shipped recipe
uses). Three other spellings are still read, so that old run folders, zoo packages, users'
recipes and command lines keep working. `upgrade_legacy` turns each into the section, once,
where a file or ``--set`` is read; nothing after it (typing, checking, merging along
``extends``) sees them:

- flat: the setting at the top level (``critic_lr: 2.0e-4``), as 0.1 wrote every algorithm's
  settings in config.yaml and package config.json, and as recipes and ``--set critic_lr=2e-4``
  may still give it; it means a setting of the algorithm being read and wins over its section;
- dotted: ``--set sac_curl.critic_lr=2e-4`` (the command line only; recipes refuse it);
- alias: a name an earlier version gave a setting (``AgentEntry.aliases``: Rainbow's
  ``critic_lr`` is ``lr``, its ``critic_target_update_freq`` is ``target_update_period``),
  flat, dotted or inside a section.

Files a run or a package wrote (``Config.from_dict``) are read more leniently: 0.1 wrote every
algorithm's settings flat, so another algorithm's flat settings are dropped there (they meant
nothing), and so are keys no version reads any more (`RETIRED_KEYS`).

This module only renames and moves keys; unknown ones are left where they are, for the strict
reader (``config_schema``) to refuse with a suggestion. No torch, no environments.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

from .errors import ConfigError
from .registry import AGENTS
from .settings import field_names

# Written by 0.1.0 and ignored since: `compile` (torch.compile gave no gain on the CPU update,
# benchmarks/README.md) was never wired to anything.
RETIRED_KEYS = frozenset({"compile"})

# what is being read: a recipe file, `--set` overrides, or a config a run or package wrote
Reading = Literal["recipe", "--set", "written"]


def upgrade_legacy(raw: Mapping[Any, Any], algorithm: str, reading: Reading) -> dict[Any, Any]:
    """``raw`` with ``algorithm``'s settings in its section, under their current names.

    Accepts the section spelling itself, flat settings of ``algorithm`` (they win over its
    section), aliases (flat or in any algorithm's section) and, when ``reading`` is ``--set``,
    dotted keys (``ALGORITHM.NAME``). When ``reading`` is ``written`` (config.yaml, state.json,
    a package's recipe) it also drops `RETIRED_KEYS` and other algorithms' flat settings."""
    data = _nest_dotted(raw) if reading == "--set" else dict(raw)
    out: dict[Any, Any] = {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in AGENTS and isinstance(value, Mapping):
            out[key] = {setting_name(k, key) or k: v for k, v in value.items()}
        elif (name := setting_name(key, algorithm)) is not None:
            flat[name] = value
        elif reading == "written" and (key in RETIRED_KEYS or _foreign_setting(key)):
            continue  # 0.1 wrote every algorithm's settings; another's meant nothing here
        else:
            out[key] = value  # a shared setting, or unknown: the strict reader says which
    section = out.get(algorithm, {})
    if flat and isinstance(section, Mapping):  # a section that is no mapping: refused later
        out[algorithm] = {**section, **flat}
    return out


def setting_name(key: object, algorithm: str) -> str | None:
    """The current name of ``algorithm``'s setting ``key`` (``key`` itself or what an alias
    now means), or None when ``key`` is neither."""
    entry = AGENTS[algorithm]
    if key in field_names(entry.settings):
        return str(key)
    return entry.aliases.get(key) if isinstance(key, str) else None


def split_dotted(key: str) -> tuple[str | None, str]:
    """``ALGORITHM.NAME`` -> (ALGORITHM, NAME); a key without a dot -> (None, key)."""
    section, dot, name = key.partition(".")
    return (section, name) if dot else (None, key)


def _foreign_setting(key: object) -> bool:
    return any(key in field_names(entry.settings) for entry in AGENTS.values())


def _nest_dotted(overrides: Mapping[Any, Any]) -> dict[Any, Any]:
    """``{"ALGORITHM.NAME": v}`` -> ``{"ALGORITHM": {"NAME": v}}``; later keys win."""
    out: dict[Any, Any] = {}
    for key, value in overrides.items():
        section, name = split_dotted(key) if isinstance(key, str) else (None, key)
        if section is None:
            out[key] = value
            continue
        if section not in AGENTS:
            raise ConfigError(f"unknown section {section!r} in --set {key}=...; sections are "
                              f"algorithms: {', '.join(AGENTS)}")
        nested = out.get(section, {})
        if isinstance(nested, Mapping):  # else the section is no mapping: refused later
            out[section] = {**nested, name: value}
    return out
