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

from core.domain import Channel, ConsentStatus, CustomerProfile, Purpose
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
    """The earliest instant at or after ``now`` that is outside quiet hours in ``zone``.

    Local time leaves the window only when the wall clock reaches its end, or when a
    daylight-saving change jumps out of it. So the answer is the first of those instants (each
    occurrence of the end time, both when it happens twice, and each clock change) that is not
    quiet. An end time that does not exist that day (a spring-forward gap) is covered by the
    clock change itself: the first minute after the gap.
    """
    now = now.astimezone(UTC)
    if not _quiet_at(now, zone, quiet):
        return now
    candidates = list(_transitions(zone, now, now + HORIZON))
    first_day = now.astimezone(zone).date() - timedelta(days=1)
    for d in range(HORIZON.days + 2):
        wall = datetime.combine(first_day + timedelta(days=d), quiet.end)
        for fold in (0, 1):
            instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
            if instant.astimezone(zone).replace(tzinfo=None) == wall:  # it exists
                candidates.append(instant)
    for instant in sorted(candidates):
        if instant >= now and not _quiet_at(instant, zone, quiet):
            return instant
    # unreachable with real tz data; stay safe rather than send at night
    probe = now
    while _quiet_at(probe, zone, quiet):  # pragma: no cover
        probe += MINUTE
    return probe


#: How far ahead the end of quiet hours is looked for (a window is shorter than a day).
HORIZON = timedelta(days=3)


def _transitions(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The instants in [start, end] at which ``zone``'s UTC offset changes (to the second)."""
    found = []
    step = timedelta(minutes=30)
    t = start
    offset = t.astimezone(zone).utcoffset()
    while t < end:
        nxt = t + step
        new = nxt.astimezone(zone).utcoffset()
        if new != offset:
            lo, hi = t, nxt  # offset(lo) == old, offset(hi) == new
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(zone).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            found.append(hi.replace(microsecond=0))
            offset = new
        t = nxt
    return found


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
