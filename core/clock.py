"""Time and ids, injected so tests control them (no wall-clock reads elsewhere)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now


def utc(value: datetime) -> datetime:
    """``value`` as an aware datetime: a naive one (SQLite drops the offset) is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def aware(value: datetime | None) -> datetime | None:
    """A datetime read back from the database as UTC-aware; None stays None."""
    return None if value is None else utc(value)


IdFactory = Callable[[str], str]


def uuid_ids(prefix: str) -> str:
    """``cus_3f2a...``: a random id with a readable prefix."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def sequential_ids() -> IdFactory:
    """Deterministic ids for tests: ``cus_0001``, ``msg_0002`` ..."""
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(counter):04d}"


def known_zone(value: str) -> str:
    """``value`` when it names an IANA timezone (``Europe/Paris``), else a ``ValueError``."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA timezone (e.g. Europe/Paris)") from None
    return value


#: A field holding an IANA timezone name, validated.
TimezoneName = Annotated[str, AfterValidator(known_zone)]
