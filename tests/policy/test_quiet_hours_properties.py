"""Property-based tests of quiet hours: ``next_allowed`` is never quiet, never before now, and
the first allowed minute, in every zone and around real DST transitions.

Hypothesis generates zones (with and without daylight saving, unknown zone names), quiet windows
and instants around real DST transitions; every answer is checked by the independent reference
in contact_reference.py, never by calling the functions under test.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import example, given
from hypothesis import strategies as st

from policy.contact import next_allowed, zone_for
from policy.model import QuietHours
from tests.policy.contact_reference import (
    AROUND_MINUTES,
    AROUND_SECONDS,
    BOOL,
    DAY_MINUTES,
    DST_ZONES,
    EDGE,
    MINUTE,
    TRANSITION,
    UNKNOWN_ZONE,
    ZONE,
    one_in,
    property_settings,
    quiet_at,
    quiet_window,
    resolve_zone,
    to_clock,
    to_minutes,
    transitions,
    uniform_instant,
)

QUIET_EXAMPLES = 3_000  # per quiet-hours property (two of them)
FIRST_MINUTE_EXAMPLES = 1_000


@dataclass(frozen=True)
class QuietCase:
    """One next_allowed question: a customer's zone name, the default zone, a window, a now."""

    tz_name: str
    default_tz: str
    start: int  # minutes of the day
    end: int
    now: datetime


def _name_for(draw: st.DrawFn, zone: str) -> tuple[str, str]:
    """(customer's zone name, default zone) such that the customer ends up in ``zone``."""
    if one_in(draw, 5):
        return draw(UNKNOWN_ZONE), zone
    return zone, draw(ZONE)


@st.composite
def uniform_quiet_cases(draw: st.DrawFn) -> QuietCase:
    """Any zone (or an unknown name), any window, any instant in 2024-2030."""
    tz_name, default_tz = _name_for(draw, draw(ZONE))
    start, end = quiet_window(draw)
    return QuietCase(tz_name, default_tz, start, end, uniform_instant(draw))


@st.composite
def dst_quiet_cases(draw: st.DrawFn) -> QuietCase:
    """An instant within ±3 h of a real transition; windows often start or end near it."""
    zone_name, transition = draw(TRANSITION)
    tz_name, default_tz = _name_for(draw, zone_name)
    now = transition + timedelta(seconds=draw(AROUND_SECONDS))
    if draw(BOOL):
        now = now.replace(second=0)
    start, end = quiet_window(draw)
    # two times in three, put an edge of the window next to the wall-clock time of the change
    edge = draw(EDGE)
    if edge != "none":
        zone = ZoneInfo(zone_name)
        wall = to_minutes((transition - MINUTE).astimezone(zone).time()) + 1
        near = (wall + draw(AROUND_MINUTES)) % DAY_MINUTES
        if edge == "start" and near != end:
            start = near
        elif edge == "end" and near != start:
            end = near
    return QuietCase(tz_name, default_tz, start, end, now)


# --- quiet hours: next_allowed ---------------------------------------------------------------

QUIET_TALLY: Counter[str] = Counter()


def check_next_allowed(case: QuietCase, *, first_minute: bool = True) -> None:
    """next_allowed is at or after now, not quiet, and (first_minute) the earliest such minute."""
    quiet = QuietHours(
        start=to_clock(case.start), end=to_clock(case.end), default_timezone=case.default_tz
    )
    zone = resolve_zone(case.tz_name, case.default_tz)
    assert zone_for(case.tz_name, case.default_tz).key == zone.key
    now = case.now
    got = next_allowed(now, zone_for(case.tz_name, case.default_tz), quiet)
    assert got >= now, f"{got} is before now {now}"
    assert not quiet_at(got, zone, case.start, case.end), (
        f"{got} = {got.astimezone(zone)} local is inside quiet hours"
    )
    if got == now:
        QUIET_TALLY["not_quiet_now"] += 1
        return
    QUIET_TALLY["deferred"] += 1
    if got.astimezone(zone).utcoffset() != now.astimezone(zone).utcoffset():
        QUIET_TALLY["deferred_across_offset_change"] += 1
    assert quiet_at(got - MINUTE, zone, case.start, case.end), (
        f"not minimal: the minute before {got.astimezone(zone)} is not quiet either"
    )
    if not first_minute:
        return
    # "the earliest minute at or after now": every minute in [now, got) is still quiet
    probe, minute = now, now.replace(second=0, microsecond=0)
    while probe < got:
        assert quiet_at(probe, zone, case.start, case.end), (
            f"not the first allowed minute: {probe} = {probe.astimezone(zone)} in {zone.key} "
            f"is outside quiet hours {to_clock(case.start)}-{to_clock(case.end)} already, but "
            f"next_allowed({now}) = {got} = {got.astimezone(zone)}"
        )
        minute += MINUTE
        probe = minute


@property_settings(QUIET_EXAMPLES)
@given(case=uniform_quiet_cases())
def _next_allowed_uniform(case: QuietCase) -> None:
    check_next_allowed(case)


@property_settings(QUIET_EXAMPLES)
@given(case=dst_quiet_cases())
def _next_allowed_near_dst(case: QuietCase) -> None:
    check_next_allowed(case, first_minute=False)


def _case(zone: str, start: str, end: str, now: str) -> QuietCase:
    """A QuietCase from readable values (now in UTC)."""
    return QuietCase(zone, "UTC", to_minutes(time.fromisoformat(start)),
                     to_minutes(time.fromisoformat(end)), datetime.fromisoformat(now + "+00:00"))


@property_settings(FIRST_MINUTE_EXAMPLES)
@given(case=dst_quiet_cases())
# fall back: the window's end exists twice and the first one is an hour earlier
# (New York 2024-11-03: 01:30 EDT = 05:30 UTC, 01:30 EST = 06:30 UTC)
@example(case=_case("America/New_York", "22:00", "01:30", "2024-11-03T04:30"))
# fall back: now is after the end's first occurrence; its second one is minutes away
@example(case=_case("America/New_York", "01:45", "01:30", "2024-11-03T05:50"))
# spring forward: the end (02:17) does not exist; 03:00, right after the gap, is allowed
@example(case=_case("Europe/Berlin", "03:12", "02:17", "2020-03-29T00:41"))
# fall back: the clock goes back to before the window's start (02:00 < 02:50)
@example(case=_case("Australia/Sydney", "02:50", "06:59", "2025-04-05T15:59"))
def _next_allowed_first_minute_near_dst(case: QuietCase) -> None:
    check_next_allowed(case, first_minute=True)


def test_next_allowed_uniform_over_zones_and_years() -> None:
    """Quiet hours over 2024-2030 in every zone: next_allowed is legal and the first minute."""
    QUIET_TALLY.clear()
    _next_allowed_uniform()
    assert QUIET_TALLY["deferred"] > QUIET_EXAMPLES // 10
    assert QUIET_TALLY["not_quiet_now"] > QUIET_EXAMPLES // 10


def test_next_allowed_around_dst_transitions() -> None:
    """Within three hours of real DST transitions: never quiet, never early, minute before quiet."""
    QUIET_TALLY.clear()
    _next_allowed_near_dst()
    assert QUIET_TALLY["deferred"] > QUIET_EXAMPLES // 10
    assert QUIET_TALLY["deferred_across_offset_change"] > QUIET_EXAMPLES // 50


def test_next_allowed_is_the_first_allowed_minute_around_dst() -> None:
    """Within three hours of real DST transitions: no earlier minute is outside quiet hours."""
    QUIET_TALLY.clear()
    _next_allowed_first_minute_near_dst()
    assert QUIET_TALLY["deferred_across_offset_change"] > 0


def test_transitions_found() -> None:
    """The scan finds the transitions the generators rely on (spring forward, fall back)."""
    ny = transitions("America/New_York")
    assert datetime(2024, 3, 10, 7, tzinfo=UTC) in ny
    assert datetime(2024, 11, 3, 6, tzinfo=UTC) in ny
    assert datetime(2024, 4, 6, 16, tzinfo=UTC) in transitions("Australia/Sydney")
    assert datetime(2011, 12, 30, 10, tzinfo=UTC) in transitions("Pacific/Apia")
    assert not transitions("Asia/Kolkata")
    assert {"America/Sao_Paulo", "Pacific/Chatham", "America/St_Johns"} <= set(DST_ZONES)
