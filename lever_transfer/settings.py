"""Declared settings: a dataclass field carries its default and its rule, side by side.

``Config`` (the shared settings) and every agent's own section (``registry.py``) declare their
fields with ``setting(default, rule)``; ``check_fields`` applies the rules once, at construction,
so a value that breaks one is refused with a line that says what is accepted. No torch, no
environments: reading and checking a recipe costs nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import field, fields
from typing import Any, Callable, Literal, Union

from .errors import ConfigError

Rule = tuple[str, Callable[[Any], bool]]  # (what is accepted, in words; the test)


def setting(default: Any, rule: Rule, resumable: bool = False) -> Any:
    """A dataclass field with its default and its rule (``check_fields`` reads the rule);
    ``resumable``: ``resume --set`` may change it (the checkpoint does not depend on it)."""
    return field(default=default, metadata={"rule": rule, "resumable": resumable})


def one_of(*choices: str) -> Rule:
    return " | ".join(repr(c) for c in choices), lambda v: v in choices


def one_line(v: str) -> bool:
    return "\n" not in v and "\r" not in v


POSITIVE_INT: Rule = ("a positive integer", lambda v: v > 0)
POSITIVE: Rule = ("a positive number", lambda v: v > 0)
ANY_NUMBER: Rule = ("a number", lambda v: True)
BOOLEAN: Rule = ("true or false", lambda v: True)
UNIT_INTERVAL: Rule = ("a number in [0, 1]", lambda v: 0 <= v <= 1)
EMA_RATE: Rule = ("a number in (0, 1]", lambda v: 0 < v <= 1)
ADAM_BETA: Rule = ("a number in [0, 1)", lambda v: 0 <= v < 1)
POSITIVE_OR_NULL: Rule = ("a positive number or null", lambda v: v is None or v > 0)


def typed(value: Any, hint: Any) -> tuple[bool, Any]:
    """(matches, normalised value) for ``value`` against a field's type hint (ints given for a
    float become floats; booleans are never numbers)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is Union:
        for arg in typing.get_args(hint):
            ok, out = typed(value, arg)
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
    if hint is Any:
        return True, value
    return isinstance(value, hint), value


@functools.cache
def _declared(cls: type) -> dict[str, tuple[Rule, Any]]:
    """name -> (rule, type hint) of a settings class's fields, read once per class."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f.metadata["rule"], hints[f.name])
            for f in fields(cls) if "rule" in f.metadata}


def check_value(cls: type, name: str, value: Any, where: str = "") -> Any:
    """One field's value checked against its type and rule; returned normalised."""
    (accepted, ok_range), hint = _declared(cls)[name]
    ok, out = typed(value, hint)
    if not ok or not ok_range(out):
        raise ConfigError(f"invalid value for '{name}'{where}: {value!r}; expected {accepted}")
    return out


def check_fields(obj: Any) -> None:
    """Check (and normalise in place) every field of a frozen settings dataclass."""
    for f in fields(obj):
        if "rule" in f.metadata:
            value = check_value(type(obj), f.name, getattr(obj, f.name))
            object.__setattr__(obj, f.name, value)


def resumable_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resumable"))


def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))
