"""Contact-policy arithmetic: consent per purpose, quiet hours and frequency caps.

Pure functions over aware datetimes. Local times come from ``zoneinfo``, so daylight-saving
transitions are handled by the tz database, never by adding fixed offsets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from journey.domain import Channel, ConsentStatus, CustomerProfile, Purpose
from policy.model import ConsentRule, FrequencyCap, QuietHours

MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class SentRecord:
    """A message already sent or scheduled, as the caps count it."""

    channel: Channel
    purpose: Purpose
    at: datetime  # when it is (or was) delivered
    reply: bool = False


@lru_cache(maxsize=512)
def zone_for(name: str | None, default: str) -> ZoneInfo:
    """The customer's zone; an unknown or empty name falls back to ``default``."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(default)


# --- consent ---------------------------------------------------------------------------------


def consent_problem(
    profile: CustomerProfile,
    channel: Channel,
    purpose: Purpose,
    rule: ConsentRule,
    *,
    is_reply: bool,
) -> str | None:
    """The reason code that forbids this purpose on this channel, or None."""
    status: ConsentStatus = profile.consent_for(channel, purpose)
    if status == "revoked":
        return "consent_revoked"
    if rule == "implied" or (rule == "reply" and is_reply):
        return None
    return None if status == "granted" else "no_consent"


# --- quiet hours -----------------------------------------------------------------------------


def is_quiet(local: time, quiet: QuietHours) -> bool:
    start, end = quiet.start, quiet.end
    t = local.replace(tzinfo=None, second=0, microsecond=0)
    if start < end:
        return start <= t < end
    return t >= start or t < end


def _quiet_at(instant: datetime, zone: ZoneInfo, quiet: QuietHours) -> bool:
    return is_quiet(instant.astimezone(zone).time(), quiet)


def next_allowed(now: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime:
    """The earliest minute at or after ``now`` that is outside quiet hours in ``zone``.

    The window's end is a wall-clock time: on a day when it does not exist (a spring-forward
    gap) the first minute after the gap is used; when it exists twice, the first one.
    """
    now = now.astimezone(UTC)
    if not _quiet_at(now, zone, quiet):
        return now
    local = now.astimezone(zone)
    day = local.date() if local.time().replace(tzinfo=None) < quiet.end else (
        local.date() + timedelta(days=1)
    )
    for _ in range(3):  # the end time exists on one of the next days whatever the tz rules
        wall = datetime.combine(day, quiet.end)
        earliest = min(
            wall.replace(tzinfo=zone, fold=0).astimezone(UTC),
            wall.replace(tzinfo=zone, fold=1).astimezone(UTC),
        )
        latest = max(
            wall.replace(tzinfo=zone, fold=0).astimezone(UTC),
            wall.replace(tzinfo=zone, fold=1).astimezone(UTC),
        )
        if earliest < now:
            earliest = now
        if latest >= now and not _quiet_at(latest, zone, quiet):
            # binary search the first non-quiet minute in [earliest, latest]
            lo, hi = earliest, latest
            while hi - lo > MINUTE:
                mid = lo + (hi - lo) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid <= lo:
                    break
                if _quiet_at(mid, zone, quiet):
                    lo = mid
                else:
                    hi = mid
            if lo >= now and not _quiet_at(lo, zone, quiet):
                return lo
            return hi
        day += timedelta(days=1)
    # unreachable with real tz data; stay safe rather than send at night
    probe = now
    while _quiet_at(probe, zone, quiet):
        probe += MINUTE
    return probe


# --- frequency caps --------------------------------------------------------------------------


def cap_applies(cap: FrequencyCap, channel: Channel, purpose: Purpose) -> bool:
    return purpose in cap.purposes and (not cap.channels or channel in cap.channels)


def cap_exceeded(
    cap: FrequencyCap,
    channel: Channel,
    purpose: Purpose,
    at: datetime,
    ledger: Iterable[SentRecord],
    zone: ZoneInfo,
    *,
    count_replies: bool = False,
) -> bool:
    """Would one more message at ``at`` break ``cap``?

    Rolling windows: no half-open window ``[s, s + window)`` may hold more than ``max``
    messages, so messages scheduled later count too. Calendar days are the customer's.
    """
    if not cap_applies(cap, channel, purpose):
        return False
    if cap.max == 0:
        return True
    times = [
        r.at for r in ledger
        if cap_applies(cap, r.channel, r.purpose) and (count_replies or not r.reply)
    ]
    if cap.per == "day":
        day = at.astimezone(zone).date()
        return sum(1 for t in times if t.astimezone(zone).date() == day) + 1 > cap.max
    window = cap.window
    if window is None:  # pragma: no cover - the model requires one of the two
        return False
    # a window that holds ``at`` can slide right until its left edge meets a message, so the
    # fullest one starts at a message in (at - window, at] or at ``at`` itself
    near = [t for t in times if at - window < t < at + window] + [at]
    starts = [t for t in near if t <= at]
    fullest = max(sum(1 for t in near if s <= t < s + window) for s in starts)
    return fullest > cap.max
