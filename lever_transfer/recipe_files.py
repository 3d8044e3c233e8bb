"""Recipe files: finding them (packaged or on disk, by recipe, task or game name), reading their
YAML strictly, following ``extends:``. Typing the values is ``config``'s job.

Packaged recipes live in ``lever_transfer.recipes`` (``recipes/`` in the checkout) and are found
through ``importlib.resources``. Task names are only recognised here; the env module checks them.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

DMC_TASK = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+"


def is_atari_task(task: str) -> bool:
    """``atari:qbert`` or a gymnasium game name such as ``Qbert`` (the env module checks it)."""
    return re.fullmatch(r"atari:[a-z][a-z0-9_]*|[A-Z][A-Za-z0-9]*", task) is not None


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader that reads 1e-3 as a float (YAML 1.2) and refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        self.flatten_mapping(node)
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*\.\d*|\.\d+|\d[\d_]*)(?:[eE][-+]?\d+)$"),
    list("-+0123456789."))


@dataclass(frozen=True)
class RecipeFile:
    """One recipe file: `label` for messages, `node` to read, `pkg_dir` if packaged."""

    label: str
    node: Traversable
    pkg_dir: str | None = None

    @property
    def key(self) -> str:
        """Identity for cycle detection: the resolved path, or the packaged label."""
        return self.label if self.pkg_dir is not None else str(Path(self.label).resolve())


def _recipe_root() -> Traversable:
    try:
        return resources.files("lever_transfer.recipes")
    except ModuleNotFoundError:  # running from a checkout that is not installed
        return Path(__file__).resolve().parent.parent / "recipes"


def _packaged(relpath: str) -> RecipeFile | None:
    parts = [p for p in posixpath.normpath(relpath).split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    node = _recipe_root().joinpath(*parts)
    return RecipeFile(f"recipes/{'/'.join(parts)}", node, posixpath.dirname("/".join(parts))) \
        if node.is_file() else None


def atari_game(task: str) -> str:
    """``atari:qbert`` / ``Qbert`` / ``BankHeist`` -> ``qbert`` / ``bank_heist`` (spelling only)."""
    game = task.removeprefix("atari:")
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in game).lstrip("_")


# DeepMind Control domains whose names hold an underscore (the rest split at the first one)
DMC_UNDERSCORE_DOMAINS = ("ball_in_cup", "point_mass", "humanoid_CMU")

# DER's Atari preprocessing (envs/atari.py applies it; model cards state it): kept here, free of
# gymnasium, so a card can be written by the core install.
ATARI_FRAME_SKIP = 4
ATARI_FRAME_STACK = 4
ATARI_SCREEN_SIZE = 84
ATARI_NOOP_MAX = 30
ATARI_MAX_EPISODE_FRAMES = 108_000  # 30 minutes of play at 60 Hz, the standard limit


def environment_id(task: str) -> str:
    """The gymnasium id of a task: ``atari:qbert`` -> ``ALE/Qbert-v5``; ``walker_stand`` ->
    ``dm_control/walker-stand-v0`` (shimmy's registration of DeepMind Control)."""
    if is_atari_task(task):
        return f"ALE/{''.join(part.capitalize() for part in atari_game(task).split('_'))}-v5"
    domain = next((d for d in DMC_UNDERSCORE_DOMAINS if task.startswith(f"{d}_")),
                  task.split("_", 1)[0])
    return f"dm_control/{domain}-{task.removeprefix(domain + '_')}-v0"


def _find_recipe(name: str) -> RecipeFile | None:
    """A packaged recipe by name: `quickstart`, `walker_walk` (= `dmc/walker_walk`), `qbert` or
    `atari:qbert` (= `atari/qbert`)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    if is_atari_task(stem):
        return _packaged(f"atari/{atari_game(stem)}.yaml")
    return _packaged(f"{stem}.yaml") or _packaged(f"dmc/{stem}.yaml") or \
        _packaged(f"atari/{stem}.yaml")


def read_yaml(src: RecipeFile) -> dict[str, Any]:
    try:
        text = src.node.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read recipe {src.label}: {e}") from None
    try:
        loader = RecipeLoader(text)
        try:
            node = loader.get_single_node()
            data = {} if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"invalid YAML in {src.label} at{where}: {problem}; fix the syntax "
                          f"there") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {src.label} line {node.start_mark.line + 1} is a "
                          f"{type(data).__name__}, not a mapping; write 'key: value' lines")
    return data


def resolve_extends(parent: object, src: RecipeFile) -> RecipeFile:
    if not isinstance(parent, str) or not parent.strip():
        raise ConfigError(f"'extends' in {src.label} must be a recipe name or a .yaml path, "
                          f"got {parent!r}")
    if parent.endswith((".yaml", ".yml")):
        if src.pkg_dir is None:
            path = Path(src.label).parent / parent
            found = RecipeFile(str(path), path) if path.is_file() else None
        else:
            found = _packaged(posixpath.join(src.pkg_dir, parent))
    else:
        found = _find_recipe(parent)
    if found is None:
        raise ConfigError(f"recipe {src.label} extends {parent!r}, which does not exist; use a "
                          f"packaged recipe name (see `lever-transfer recipes`) or a relative path")
    return found


def locate(name: str) -> tuple[RecipeFile, str | None]:
    """(recipe, task override): a .yaml path, a packaged recipe, or a task on the defaults."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return RecipeFile(name, Path(name)), None
    found = _find_recipe(name)
    if found is not None:
        return found, None
    if is_atari_task(name):
        defaults = _find_recipe("atari/atari_defaults")
        assert defaults is not None  # packaged with lever_transfer
        return defaults, f"atari:{atari_game(name)}"
    if "/" in name or "\\" in name or name.endswith((".yaml", ".yml")):
        raise ConfigError(f"no recipe file or packaged recipe {name!r}; check the path or run "
                          f"`lever-transfer recipes` to list the packaged ones")
    if re.fullmatch(DMC_TASK, name) is None:
        close = difflib.get_close_matches(name, [r[0] for r in recipe_names()], n=1)
        hint = f"did you mean '{close[0]}'?" if close else "run `lever-transfer recipes`"
        raise ConfigError(f"{name!r} is not a recipe, a .yaml file or a task name; {hint}")
    defaults = _find_recipe("dmc/defaults")
    assert defaults is not None  # packaged with lever_transfer
    return defaults, name


def recipe_names() -> list[tuple[str, RecipeFile]]:
    root = _recipe_root()
    out: list[tuple[str, RecipeFile]] = []
    for sub in ("", "dmc", "atari"):
        folder = root.joinpath(sub) if sub else root
        for node in sorted(folder.iterdir(), key=lambda n: n.name) if folder.is_dir() else []:
            if node.name.endswith(".yaml") and node.is_file():
                recipe = _packaged(posixpath.join(sub, node.name))
                assert recipe is not None  # the file was just listed
                out.append((node.name[:-5], recipe))
    return sorted(out, key=lambda item: item[0])
