"""Property-based tests: no send ever breaks consent, frequency caps or quiet hours.

Hypothesis generates customers (timezones with and without daylight saving, unknown zone names,
identities, consent per channel and purpose), policies (caps, quiet hours, channels down) and
sequences of proposed messages around real DST transitions. Every approved send is then checked
by an independent checker written here from the rules' definitions (policy/model.py docstrings,
policy/default.yaml), never by calling the functions under test.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.domain import CHANNELS, Channel, ChannelConsent, CustomerProfile, Identity, Purpose
from core.domain import SendMessage as Send
from policy.contact import SentRecord, next_allowed, zone_for
from policy.engine import Facts, PolicyEngine
from policy.escalation import MessageFacts
from policy.loader import load_policy
from policy.model import ConsentRule, FrequencyCap, Policy, QuietHours

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
PURPOSES: tuple[Purpose, ...] = ("marketing", "service", "transactional")
STATUSES = ("granted", "revoked", "unknown")
RULES: tuple[ConsentRule, ...] = ("explicit", "implied", "reply")
#: Which identity a channel delivers to (sms and WhatsApp both go to the phone number).
ADDRESS_KIND: dict[Channel, str] = {
    "web_chat": "web_chat_id", "email": "email", "sms": "phone", "whatsapp": "phone"
}
NEUTRAL_TEXTS = (
    "Your order has shipped and is on its way.",
    "Your monthly invoice is ready in your account.",
    "How did we do today? Tell us in one word.",
    "Here is the setup guide you asked for.",
)
PROMO_TEXTS = (
    "Our spring sale starts today on every plan.",
    "A special offer for you: upgrade now and get more seats.",
    "Limited-time deal on annual plans this week.",
)
QUIET_EXAMPLES = 3_000  # per quiet-hours property (two of them)
FIRST_MINUTE_EXAMPLES = 1_000
ENGINE_EXAMPLES = 4_000


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


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _clock(minutes: int) -> time:
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


@dataclass(frozen=True)
class QuietCase:
    """One next_allowed question: a customer's zone name, the default zone, a window, a now."""

    tz_name: str
    default_tz: str
    start: int  # minutes of the day
    end: int
    now: datetime


def _window(draw: st.DrawFn) -> tuple[int, int]:
    """A quiet window [start, end) in minutes of the day, start != end, maybe over midnight."""
    start = draw(MINUTE_OF_DAY)
    return start, (start + draw(NONZERO_MINUTES)) % DAY_MINUTES


def _name_for(draw: st.DrawFn, zone: str) -> tuple[str, str]:
    """(customer's zone name, default zone) such that the customer ends up in ``zone``."""
    if one_in(draw, 5):
        return draw(UNKNOWN_ZONE), zone
    return zone, draw(ZONE)


@st.composite
def uniform_quiet_cases(draw: st.DrawFn) -> QuietCase:
    """Any zone (or an unknown name), any window, any instant in 2024-2030."""
    tz_name, default_tz = _name_for(draw, draw(ZONE))
    start, end = _window(draw)
    return QuietCase(tz_name, default_tz, start, end, uniform_instant(draw))


@st.composite
def dst_quiet_cases(draw: st.DrawFn) -> QuietCase:
    """An instant within ±3 h of a real transition; windows often start or end near it."""
    zone_name, transition = draw(TRANSITION)
    tz_name, default_tz = _name_for(draw, zone_name)
    now = transition + timedelta(seconds=draw(AROUND_SECONDS))
    if draw(BOOL):
        now = now.replace(second=0)
    start, end = _window(draw)
    # two times in three, put an edge of the window next to the wall-clock time of the change
    edge = draw(EDGE)
    if edge != "none":
        zone = ZoneInfo(zone_name)
        wall = _minutes((transition - MINUTE).astimezone(zone).time()) + 1
        near = (wall + draw(AROUND_MINUTES)) % DAY_MINUTES
        if edge == "start" and near != end:
            start = near
        elif edge == "end" and near != start:
            end = near
    return QuietCase(tz_name, default_tz, start, end, now)


# --- 1. quiet hours: next_allowed ------------------------------------------------------------

QUIET_TALLY: Counter[str] = Counter()


def check_next_allowed(case: QuietCase, *, first_minute: bool = True) -> None:
    """next_allowed is at or after now, not quiet, and (first_minute) the earliest such minute."""
    quiet = QuietHours(
        start=_clock(case.start), end=_clock(case.end), default_timezone=case.default_tz
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
            f"is outside quiet hours {_clock(case.start)}-{_clock(case.end)} already, but "
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
    return QuietCase(zone, "UTC", _minutes(time.fromisoformat(start)),
                     _minutes(time.fromisoformat(end)), datetime.fromisoformat(now + "+00:00"))


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


# --- 2. the engine end to end ----------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    channel: Channel
    purpose: Purpose
    promo: bool
    text: str


@dataclass(frozen=True)
class Turn:
    gap: timedelta
    inbound: Channel | None
    proposals: tuple[Proposal, ...]


@dataclass(frozen=True)
class Scenario:
    profile: CustomerProfile
    policy: Policy
    origin: str
    start: datetime
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Delivered:
    """One approved send as the checker sees it."""

    proposal: Proposal
    channel: Channel
    purpose: Purpose
    inbound: Channel | None
    now: datetime
    deliver_at: datetime | None

    @property
    def at(self) -> datetime:
        return self.deliver_at or self.now

    @property
    def reply(self) -> bool:
        """A reply answers on the customer's channel: proposed there, and not marketing."""
        return self.proposal.channel == self.inbound == self.channel and (
            self.purpose != "marketing"
        )


DEFAULT_POLICY = load_policy()
CREATED = datetime(2023, 1, 1, tzinfo=UTC)
NEUTRAL_FACTS = MessageFacts(text="hello", intent="question", confidence=0.9, sentiment="neutral")


CHANNEL = st.sampled_from(CHANNELS)
PURPOSE = st.sampled_from(PURPOSES)
RULE = st.sampled_from(RULES)
#: Granted half the time, so that plenty of sends get through to the caps and quiet hours.
STATUS = st.sampled_from(("granted", "granted", "revoked", "unknown"))
CAP_KIND = st.sampled_from(("day", "m", "h", "d"))
CAP_SPAN = {"m": st.integers(1, 240), "h": st.integers(1, 48), "d": st.integers(1, 7)}
CAP_MAX = st.integers(0, 3)
CAP_PURPOSES = st.sampled_from((("marketing",), ("marketing",), ("service",),
                                ("marketing", "service")))
CHANNEL_SET = st.sets(CHANNEL)
PREFERENCE = st.permutations(CHANNELS)
NEUTRAL_TEXT = st.sampled_from(NEUTRAL_TEXTS)
PROMO_TEXT = st.sampled_from(PROMO_TEXTS)
SHORT_GAP = st.integers(1, 180)
LONG_GAP = st.integers(1, 3 * DAY_MINUTES)
BEFORE_TRANSITION = st.integers(0, 36 * 60)
ANY_ZONE_NAME = st.sampled_from(ZONES + UNKNOWN_ZONES)


@st.composite
def caps(draw: st.DrawFn) -> list[FrequencyCap]:
    """0-4 caps: rolling windows of minutes, hours or days, or per calendar day."""
    out: list[FrequencyCap] = []
    for n in range(draw(st.integers(0, 4))):
        kind = draw(CAP_KIND)
        out.append(
            FrequencyCap(
                name=f"cap_{n}",
                max=draw(CAP_MAX),
                purposes=list(draw(CAP_PURPOSES)),
                channels=sorted(draw(CHANNEL_SET)),
                window=None if kind == "day" else f"{draw(CAP_SPAN[kind])}{kind}",
                per="day" if kind == "day" else None,
                include_replies=one_in(draw, 4),
            )
        )
    return out


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """The default policy with random caps, quiet hours, channels down and consent rules."""
    contact = DEFAULT_POLICY.contact
    quiet: QuietHours | None = None
    if not one_in(draw, 10):
        start, end = _window(draw)
        quiet = QuietHours(
            start=_clock(start), end=_clock(end),
            purposes=["marketing", "service"] if one_in(draw, 4) else ["marketing"],
            default_timezone=draw(ZONE),
        )
    channels = {
        c: p.model_copy(update={"available": not one_in(draw, 8)})
        for c, p in contact.channels.items()
    }
    rules = dict(contact.consent.purposes)
    if draw(BOOL):
        rules = {p: draw(RULE) for p in PURPOSES}
    return DEFAULT_POLICY.model_copy(update={
        "contact": contact.model_copy(update={
            "caps": draw(caps()),
            "quiet_hours": quiet,
            "channels": channels,
            "switch_channels": not one_in(draw, 4),
            "preference": draw(PREFERENCE),
            "consent": contact.consent.model_copy(update={"purposes": rules}),
        }),
        # no escalation rule adds messages of its own: every verdict is for a proposal
        "escalation": DEFAULT_POLICY.escalation.model_copy(update={"rules": []}),
    })


@st.composite
def profiles(draw: st.DrawFn) -> CustomerProfile:
    """A customer: zone (maybe unknown), some identities, consent per channel and purpose."""
    kinds = [k for k in ("web_chat_id", "email", "phone") if not one_in(draw, 4)]
    consent = {
        c: ChannelConsent(service=draw(STATUS), marketing=draw(STATUS))
        for c in CHANNELS if not one_in(draw, 5)
    }
    attributes: dict[str, object] = {}
    if one_in(draw, 4):
        attributes["channel_preference"] = draw(CHANNEL)
    return CustomerProfile(
        id="c1",
        identities=[Identity(kind=k, value=f"{k}-of-c1") for k in kinds],  # type: ignore[arg-type]
        attributes=attributes,
        lifecycle_stage="lead",
        consent=consent,
        timezone=draw(ANY_ZONE_NAME),
        created_at=CREATED,
        updated_at=CREATED,
    )


@st.composite
def turns(draw: st.DrawFn) -> tuple[Turn, ...]:
    """1-12 turns, proactive or replies, 1 minute to 3 days apart, 1-2 proposals each."""
    out: list[Turn] = []
    for _ in range(draw(st.integers(1, 12))):
        gap = draw(LONG_GAP if one_in(draw, 4) else SHORT_GAP)
        inbound = draw(CHANNEL) if one_in(draw, 3) else None
        proposals = []
        for k in range(2 if one_in(draw, 4) else 1):
            promo = one_in(draw, 4)
            on_inbound = inbound is not None and k == 0 and draw(BOOL)
            proposals.append(Proposal(
                channel=inbound if on_inbound and inbound is not None else draw(CHANNEL),
                purpose=draw(PURPOSE),
                promo=promo,
                text=draw(PROMO_TEXT if promo else NEUTRAL_TEXT),
            ))
        out.append(Turn(timedelta(minutes=gap), inbound, tuple(proposals)))
    return tuple(out)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A customer, a policy and a sequence of turns, often starting just before a transition."""
    profile = draw(profiles())
    policy = draw(policies())
    zone = resolve_zone(profile.timezone, _default_zone(policy))
    found = transitions(zone.key)
    if len(found) > 0 and draw(BOOL):
        before = timedelta(minutes=draw(BEFORE_TRANSITION))
        start = draw(st.sampled_from(found)) - before
    else:
        start = uniform_instant(draw)
    origin = "model" if one_in(draw, 4) else "system"
    return Scenario(profile, policy, origin, start, draw(turns()))


def _default_zone(policy: Policy) -> str:
    quiet = policy.contact.quiet_hours
    return quiet.default_timezone if quiet is not None else "UTC"


def expected_purpose(p: Proposal, inbound: Channel | None, origin: str) -> Purpose:
    """Only the system sends transactional; a proactive promotional message is marketing."""
    purpose = p.purpose
    if origin == "model" and purpose == "transactional":
        purpose = "service"
    if purpose == "service" and p.promo and p.channel != inbound:
        purpose = "marketing"
    return purpose


def consent_ok(s: Scenario, d: Delivered) -> bool:
    """Consent as ConsentPolicy defines it; transactional follows service consent."""
    # explicit: granted; implied: not revoked; reply: implied on the channel the customer wrote
    # on, explicit on any other
    rule = s.policy.contact.consent.purposes[d.purpose]
    found = s.profile.consent.get(d.channel)
    status = "unknown" if found is None else (
        found.marketing if d.purpose == "marketing" else found.service
    )
    if rule == "explicit" or (rule == "reply" and not d.reply):
        return status == "granted"
    return status != "revoked"


def check_caps(s: Scenario, sent: list[Delivered], zone: ZoneInfo) -> None:
    """Every half-open window [t, t + window), and every local calendar day, within max."""
    for cap in s.policy.contact.caps:
        counted = sorted(
            d.at for d in sent
            if d.purpose in cap.purposes
            and (not cap.channels or d.channel in cap.channels)
            and (cap.include_replies or not d.reply)
        )
        if cap.per == "day":
            days = Counter(t.astimezone(zone).date() for t in counted)
            worst = max(days.values(), default=0)
            assert worst <= cap.max, f"cap {cap.name}: {days} over {cap.max} per day"
            continue
        assert cap.window is not None
        for i, t in enumerate(counted):
            inside = bisect.bisect_left(counted, t + cap.window) - i
            assert inside <= cap.max, (
                f"cap {cap.name}: {inside} sends in [{t}, {t + cap.window}) > {cap.max}"
            )


def check_scenario(s: Scenario, sent: list[Delivered]) -> None:
    """The independent checker over all approved sends of one scenario."""
    contact = s.policy.contact
    zone = resolve_zone(s.profile.timezone, _default_zone(s.policy))
    kinds = {i.kind for i in s.profile.identities}
    quiet = contact.quiet_hours
    for d in sent:
        where = f"{d.proposal} sent as {d.purpose} on {d.channel} at {d.at} (now {d.now})"
        assert d.purpose == expected_purpose(d.proposal, d.inbound, s.origin), where
        # (b) an address, and the channel is up
        assert ADDRESS_KIND[d.channel] in kinds, f"no identity: {where}"
        assert contact.channels[d.channel].available, f"channel down: {where}"
        # (a) consent
        assert consent_ok(s, d), f"consent: {where}; consent {s.profile.consent}"
        # a reply stays on its channel; a proactive message switches only when allowed
        if (d.proposal.channel == d.inbound and d.purpose != "marketing") or (
            not contact.switch_channels
        ):
            assert d.channel == d.proposal.channel, f"switched: {where}"
        # (e) never before now
        if d.deliver_at is not None:
            assert d.deliver_at >= d.now, f"deferred into the past: {where}"
        # (c) quiet hours, for proactive messages of the window's purposes (a reply to the
        # customer's own message is not deferred: the engine applies quiet hours to proactive
        # sends only)
        if quiet is not None and d.purpose in quiet.purposes and not d.reply:
            local = d.at.astimezone(zone)
            assert not quiet_local(local, _minutes(quiet.start), _minutes(quiet.end)), (
                f"quiet hours {quiet.start}-{quiet.end} in {zone.key}: local {local}; {where}"
            )
    # (d) caps
    check_caps(s, sent, zone)


ENGINE_TALLY: Counter[str] = Counter()


def run_scenario(s: Scenario) -> list[Delivered]:
    """Feed the turns to the engine, the ledger being everything approved so far."""
    engine = PolicyEngine(s.policy)
    zone = resolve_zone(s.profile.timezone, _default_zone(s.policy))
    sent: list[Delivered] = []
    now = s.start
    for turn in s.turns:
        now += turn.gap
        proposed = [Send(channel=p.channel, text=p.text, purpose=p.purpose)
                    for p in turn.proposals]
        ledger = tuple(SentRecord(d.channel, d.purpose, d.at, reply=d.reply) for d in sent)
        arbitration = engine.arbitrate(proposed, Facts(
            profile=s.profile, message=NEUTRAL_FACTS, inbound_channel=turn.inbound, now=now,
            stages=("lead",), ledger=ledger, origin=s.origin,
        ))
        assert len(arbitration.verdicts) == len(proposed)
        for i, verdict in enumerate(arbitration.verdicts):
            action = arbitration.approved.get(i)
            ENGINE_TALLY.update(verdict.reason_codes)
            if action is None:
                ENGINE_TALLY["denied"] += 1
                assert verdict.outcome == "deny" and verdict.deliver_at is None
                continue
            assert isinstance(action, Send) and verdict.outcome != "deny"
            d = Delivered(turn.proposals[i], action.channel, action.purpose, turn.inbound, now,
                          verdict.deliver_at)
            ENGINE_TALLY["approved"] += 1
            ENGINE_TALLY[verdict.outcome] += 1
            if d.deliver_at is not None:
                ENGINE_TALLY["deferred"] += 1
                if crosses_transition(zone, now, d.deliver_at):
                    ENGINE_TALLY["deferred_across_dst"] += 1
            sent.append(d)
    if crosses_transition(zone, s.start, now):
        ENGINE_TALLY["scenario_across_dst"] += 1
    return sent


@property_settings(ENGINE_EXAMPLES)
@given(scenario=scenarios())
def _engine_property(scenario: Scenario) -> None:
    check_scenario(scenario, run_scenario(scenario))


def test_engine_never_breaks_consent_caps_or_quiet_hours() -> None:
    """Random customers, policies and turns: every approved send passes the independent check."""
    ENGINE_TALLY.clear()
    _engine_property()
    # not vacuous: every outcome and every rule was exercised
    for key in ("allow", "modify", "deferred", "denied", "quiet_hours_deferred",
                "frequency_capped", "no_consent", "consent_revoked", "no_identity",
                "channel_unavailable", "switched_channel", "duplicate_action",
                "promotional_content", "purpose_downgraded", "deferred_across_dst",
                "scenario_across_dst"):
        assert ENGINE_TALLY[key] > 0, f"{key} never happened: {ENGINE_TALLY}"
    assert ENGINE_TALLY["approved"] > ENGINE_EXAMPLES
    assert ENGINE_TALLY["denied"] > ENGINE_EXAMPLES // 2
