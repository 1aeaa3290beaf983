"""The reference the contact property tests check against, and their shared Hypothesis
building blocks (test_quiet_hours_properties.py, test_contact_properties.py).

Written from the rules' definitions (policy/model.py docstrings, policy/default.yaml), never by
calling the functions under test; real DST transitions are found by scanning utcoffset changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

MINUTE = timedelta(minutes=1)
ZONES: tuple[str, ...] = (
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Sydney",  # southern hemisphere DST
    "America/Sao_Paulo",  # DST at midnight until 2019
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Apia",  # skipped 2011-12-30 entirely
    "America/St_Johns",  # -03:30 / -02:30
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Europe/Dublin",  # negative DST in the tz database
    "UTC",
)
#: Names that are not zones: the customer is treated as being in the default zone.
UNKNOWN_ZONES: tuple[str, ...] = ("Mars/Olympus_Mons", "", "not a zone", "../../etc/passwd")
UNIFORM_FROM = datetime(2024, 1, 1, tzinfo=UTC)
UNIFORM_TO = datetime(2031, 1, 1, tzinfo=UTC)
#: Where DST transitions are looked for (wider than the uniform range: Sao Paulo, Apia).
SCAN_FROM, SCAN_TO = datetime(2010, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC)
DAY_MINUTES = 24 * 60


def property_settings(examples: int) -> settings:
    """Reproducible settings: the same examples on every run and in CI."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- the reference: written from the rules' definitions ----------------------------------------


def resolve_zone(name: str, default: str) -> ZoneInfo:
    """The customer's zone by definition: a known name, else the policy's default zone."""
    return ZoneInfo(name if name in ZONES else default)


def quiet_local(local: datetime, start: int, end: int) -> bool:
    """Is this local wall-clock minute inside the window [start, end) (minutes of the day)?"""
    minute = local.hour * 60 + local.minute
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # the window crosses midnight


def quiet_at(instant: datetime, zone: ZoneInfo, start: int, end: int) -> bool:
    """Quiet at this instant for a customer in ``zone``."""
    return quiet_local(instant.astimezone(zone), start, end)


def to_minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def to_clock(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


# --- real DST transitions, found by scanning utcoffset changes ---------------------------------


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta | None:
    return instant.astimezone(zone).utcoffset()


@cache
def transitions(name: str) -> tuple[datetime, ...]:
    """UTC instants (to the minute) at which the zone's offset changes between 2010 and 2030."""
    zone = ZoneInfo(name)
    found: list[datetime] = []
    day = SCAN_FROM
    before = _offset(zone, day)
    while day < SCAN_TO:
        nxt = day + timedelta(days=1)
        after = _offset(zone, nxt)
        if after != before:
            lo, hi = day, nxt
            while hi - lo > MINUTE:
                mid = (lo + (hi - lo) / 2).replace(second=0, microsecond=0)
                if mid <= lo:
                    break
                if _offset(zone, mid) == before:
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
        day, before = nxt, after
    return tuple(found)


DST_ZONES = tuple(z for z in ZONES if transitions(z))
ALL_TRANSITIONS: tuple[tuple[str, datetime], ...] = tuple(
    (z, t) for z in DST_ZONES for t in transitions(z)
)


def crosses_transition(zone: ZoneInfo, a: datetime, b: datetime) -> bool:
    """The zone's offset differs somewhere in [a, b] (checked at the transitions found)."""
    return any(a <= t <= b for t in transitions(zone.key))


# --- strategies -----------------------------------------------------------------------------
# Module-level strategies: Hypothesis validates each strategy object once, so building them
# here (not inside the composites) keeps generation cheap.

MINUTE_OF_DAY = st.integers(0, DAY_MINUTES - 1)
NONZERO_MINUTES = st.integers(1, DAY_MINUTES - 1)
SECONDS_2024_2030 = st.integers(int(UNIFORM_FROM.timestamp()), int(UNIFORM_TO.timestamp()) - 1)
AROUND_SECONDS = st.integers(-3 * 3600, 3 * 3600)
AROUND_MINUTES = st.integers(-90, 90)
ZONE = st.sampled_from(ZONES)
UNKNOWN_ZONE = st.sampled_from(UNKNOWN_ZONES)
TRANSITION = st.sampled_from(ALL_TRANSITIONS)
EDGE = st.sampled_from(("none", "start", "end"))
BOOL = st.booleans()


def one_in(draw: st.DrawFn, n: int) -> bool:
    """True with probability 1/n."""
    return draw(st.integers(0, n - 1)) == 0


def uniform_instant(draw: st.DrawFn) -> datetime:
    """An instant to the second, uniformly over 2024-2030."""
    return datetime.fromtimestamp(draw(SECONDS_2024_2030), UTC)


def quiet_window(draw: st.DrawFn) -> tuple[int, int]:
    """A quiet window [start, end) in minutes of the day, start != end, maybe over midnight."""
    start = draw(MINUTE_OF_DAY)
    return start, (start + draw(NONZERO_MINUTES)) % DAY_MINUTES
