"""Loading a `Config`: a recipe and its ``extends`` chain, then ``--set`` overrides on top.

A recipe is a YAML mapping of `Config` fields, optionally ``extends: OTHER`` (a recipe name or a
path relative to the file; ``recipe_files`` finds and reads them). Each file and the overrides
pass ``config_compat.upgrade_legacy`` once, as they are read, and are then typed by
``config_schema``; this module only walks the chain and merges. No torch, no dm_control.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .config_compat import upgrade_legacy
from .config_schema import Config, Values, algorithm_of, build, coerce, typed_values
from .errors import ConfigError
from .recipe_files import (
    RecipeFile,
    is_atari_task,
    locate,
    read_yaml,
    recipe_names,
    resolve_extends,
)
from .registry import DEFAULT_AGENT


def load_config(name_or_path: str, overrides: Mapping[str, object] | None = None) -> Config:
    """Config from a recipe path, a packaged recipe name or a task name, plus `--set` overrides.

    A task name without a recipe gets `recipes/dmc/defaults.yaml` (Atari games
    `recipes/atari/atari_defaults.yaml`) with `task` set to it.
    Override values may be strings (parsed as YAML; step counts also as "60k env_steps", a bare
    number meaning env steps) or typed values. The algorithm's own settings are given by their
    names (``critic_lr=2e-4``) or as ``ALGORITHM.NAME`` (``config_compat``).
    """
    src, task = locate(name_or_path)
    shared, sections = _load_chain(src)
    if task is not None:
        table = "table-5" if is_atari_task(task) else "table-4"
        shared.update(task=task, paper="",
                      description=f"{task} on the shared {table} defaults (no recipe for it)")
    given = overrides or {}
    algorithm = shared.get("algorithm", DEFAULT_AGENT)
    if "algorithm" in given:
        algorithm = coerce("algorithm", given["algorithm"], " in --set", cli=True)
    given = upgrade_legacy(given, algorithm, "--set")
    set_shared, set_sections = typed_values(given, algorithm, "--set", "override key", cli=True)
    return build({**shared, **set_shared}, _merge(sections, set_sections))


def parse_set_options(items: Iterable[str]) -> dict[str, str]:
    """["batch_size=32", ...] (from repeated --set) -> {"batch_size": "32"}; last one wins."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}; e.g. --set batch_size=32")
        out[key.strip()] = value
    return out


def list_recipes() -> list[tuple[str, str, str]]:
    """(name, paper, description) of every packaged recipe, sorted by name."""
    out = []
    for name, src in recipe_names():
        config = build(*_load_chain(src))
        out.append((name, config.paper, config.description))
    return out


def _load_chain(src: RecipeFile, chain: tuple[RecipeFile, ...] = ()) -> Values:
    """Typed values of `src` over those of its `extends` ancestors; sections merge key by key,
    so a recipe can change one of its algorithm's settings and inherit the rest."""
    if src.key in {s.key for s in chain}:
        labels = " -> ".join(s.label for s in (*chain, src))
        raise ConfigError(f"recipe cycle: {labels}; remove one of these 'extends'")
    data = read_yaml(src)
    parent = data.pop("extends", None)
    shared: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    if parent is not None:
        shared, sections = _load_chain(resolve_extends(parent, src), (*chain, src))
    algorithm = algorithm_of(data, src.label, shared.get("algorithm"))
    data = upgrade_legacy(data, algorithm, "recipe")  # flat settings mean this file's algorithm
    own_shared, own_sections = typed_values(data, algorithm, src.label, "recipe key")
    return {**shared, **own_shared}, _merge(sections, own_sections)


def _merge(base: Mapping[str, dict[str, Any]], top: Mapping[str, dict[str, Any]]
           ) -> dict[str, dict[str, Any]]:
    out = {name: dict(values) for name, values in base.items()}
    for name, values in top.items():
        out.setdefault(name, {}).update(values)
    return out
