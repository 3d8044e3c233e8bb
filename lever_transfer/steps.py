"""Step counts that always carry their unit.

The paper's tables do not say whether they count environment steps or agent steps (one agent
step = ``action_repeat`` environment steps), so recipes must say which. On the command line a
bare number ("60000", "60k") means environment steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal, Mapping

from .errors import ConfigError

Unit = Literal["env_steps", "agent_steps"]
UNITS: tuple[str, ...] = ("env_steps", "agent_steps")

_UNIT_ALIASES: dict[str, Unit] = {
    "env": "env_steps", "env_step": "env_steps", "env_steps": "env_steps",
    "environment_steps": "env_steps", "agent": "agent_steps",
    "agent_step": "agent_steps", "agent_steps": "agent_steps"}
_STEP_RE = re.compile(r"([+-]?(?:\d[\d_]*)?\.?\d*(?:e[+-]?\d+)?)\s*([km]?)\s*([a-z_ -]*)", re.I)
_STEP_HINT = "a step count such as '60k env_steps', '10000 agent_steps' or '1.5M' (env steps)"


@dataclass(frozen=True)
class StepCount:
    """A positive number of steps with its unit; one agent step = `action_repeat` env steps."""

    value: int
    """How many steps (> 0)."""
    unit: Unit
    """"env_steps" (simulator steps) or "agent_steps" (policy decisions)."""

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ConfigError(f"step unit {self.unit!r} is not one of {', '.join(UNITS)}")
        if isinstance(self.value, bool) or not isinstance(self.value, int) or self.value <= 0:
            raise ConfigError(f"step count must be a positive integer, got {self.value!r}; "
                              f"use e.g. '60000 env_steps'")

    def __str__(self) -> str:
        return f"{self.value} {self.unit}"

    def to_agent_steps(self, action_repeat: int) -> int:
        """Agent steps (env steps are floor-divided by `action_repeat`)."""
        return self.value if self.unit == "agent_steps" else self.value // action_repeat

    def to_env_steps(self, action_repeat: int) -> int:
        """Environment steps."""
        return self.value if self.unit == "env_steps" else self.value * action_repeat

    def to_mapping(self) -> dict[str, int]:
        """The YAML form, `{unit: value}`."""
        return {self.unit: self.value}

    @classmethod
    def from_mapping(cls, data: object) -> StepCount:
        """Parse the YAML form: exactly one key, `env_steps` or `agent_steps`, with an integer."""
        if not isinstance(data, Mapping) or len(data) != 1:
            raise ConfigError(f"expected a one-key mapping {{env_steps: N}} or {{agent_steps: N}}, "
                              f"got {data!r}")
        (unit, value), = data.items()
        if unit not in UNITS:
            raise ConfigError(f"step unit {unit!r} is not one of {', '.join(UNITS)}")
        return cls(value, unit)

    @classmethod
    def parse(cls, text: str) -> StepCount:
        """Parse a CLI string: "60000", "60k", "1.5M", "60k env_steps", "10k agent", "60000 env".

        A number without a unit means environment steps.
        """
        match = _STEP_RE.fullmatch(text.strip()) if isinstance(text, str) else None
        unit = _UNIT_ALIASES.get(re.sub(r"[ -]+", "_", match[3].strip().lower()) or "env") \
            if match else None
        try:
            number = Decimal(match[1].replace("_", "")) if match else None
        except InvalidOperation:
            number = None
        if number is None or unit is None or not number.is_finite():
            raise ConfigError(f"cannot read {text!r} as {_STEP_HINT}")
        if number.adjusted() > 15:
            raise ConfigError(f"step count {text!r} is implausibly large; use at most 1e15")
        assert match is not None  # number is None without a match
        number *= {"": 1, "k": 1000, "m": 1000000}[match[2].lower()]
        if number != number.to_integral_value():
            raise ConfigError(f"step count {text!r} is not a whole number of steps")
        return cls(int(number), unit)
