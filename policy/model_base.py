"""Building blocks of the policy models: the strict base model, durations and regexes.

Durations are written as ``"90m"``, ``"24h"``, ``"7d"`` in ``policy.yaml``; patterns are
checked to compile when the policy loads.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_DURATION = re.compile(r"^\s*(\d+)\s*(m|h|d)\s*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(value: str | int | timedelta) -> timedelta:
    """``"90m"``, ``"24h"``, ``"7d"`` (or seconds as an int) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int):
        return timedelta(seconds=value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration like '90m', '24h' or '7d'")
    n, unit = int(match.group(1)), match.group(2)
    return {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]


def unique_names(kind: str, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate {kind} names {dupes}")


def _duration_in(value: Any) -> Any:
    # ISO 8601 (``P1D``, what pydantic writes in JSON) is read by pydantic itself
    if isinstance(value, int) or (isinstance(value, str) and not value.startswith("P")):
        return parse_duration(value)
    return value


#: A duration written as ``"90m"``, ``"24h"``, ``"7d"`` (or seconds) in YAML.
Duration = Annotated[timedelta, BeforeValidator(_duration_in)]


def fmt_duration(window: timedelta | None) -> str:
    """A duration as the policy file writes it: ``90m``, ``24h``, ``7d``."""
    if window is None:
        return "-"
    minutes = int(window.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def _regex(value: str) -> str:
    """``value`` if it compiles as a regular expression (a line-numbered error otherwise)."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"pattern {value!r} is not a valid regular expression: {exc}") from exc
    return value


Regex = Annotated[str, AfterValidator(_regex)]


_OPS: dict[str, Any] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
    "in": lambda a, b: a in b,
}
#: the comparisons a ``where`` may use, e.g. ``{score: {gte: 9}}``
WHERE_OPERATORS = frozenset(_OPS)


def value_matches(value: Any, expected: Any) -> bool:
    """``expected`` is a plain value (equality) or ``{gte: 7, lte: 10, in: [...]}``; a
    comparison of values that cannot be compared (a missing property) does not match."""
    if not isinstance(expected, dict):
        return bool(value == expected)
    try:
        return all(bool(_OPS[op](value, arg)) for op, arg in expected.items())
    except (TypeError, KeyError):
        return False
