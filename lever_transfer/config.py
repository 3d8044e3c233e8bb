"""Run configuration: one frozen `Config`, loaded one way from YAML recipes, never mutated.

The module to import. Its parts, one job each:

- ``config_schema``: `Config` (every field with its default and rule), the rules between fields,
  and the typing of raw values into it (``Config.from_dict`` reads what ``to_dict`` writes);
- ``config_load``: `load_config` (a recipe, its ``extends`` chain, ``--set`` on top) and
  `list_recipes`; finding and reading the files is ``recipe_files``'s job;
- ``config_compat``: the spellings of an algorithm's settings that are read but never written
  (flat, dotted, aliases; 0.1's retired keys), rewritten into the section the project writes.

None of them imports torch or dm_control: reading and checking a recipe costs nothing.
"""

from __future__ import annotations

from .config_compat import RETIRED_KEYS, upgrade_legacy
from .config_load import list_recipes, load_config, parse_set_options
from .config_schema import (
    DEVICE,
    FIELD_NAMES,
    Config,
    canonical_key,
    parse_memory_size,
    resumable_keys,
)
from .errors import ConfigError
from .recipe_files import atari_game, is_atari_task
from .steps import UNITS, StepCount

__all__ = [
    "DEVICE", "FIELD_NAMES", "RETIRED_KEYS", "UNITS", "Config", "ConfigError", "StepCount",
    "atari_game", "canonical_key", "is_atari_task", "list_recipes", "load_config",
    "parse_memory_size", "parse_set_options", "resumable_keys", "upgrade_legacy",
]
