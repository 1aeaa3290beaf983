"""Property-based tests: no send ever breaks consent, frequency caps or quiet hours.

Hypothesis generates customers (timezones with and without daylight saving, unknown zone names,
identities, consent per channel and purpose), policies (caps, quiet hours, channels down) and
sequences of proposed messages around real DST transitions. Every approved send is then checked
by an independent checker written here from the rules' definitions (policy/model.py docstrings,
policy/default.yaml), never by calling the functions under test.
The quiet-hours arithmetic on its own (``next_allowed``) is tested in
test_quiet_hours_properties.py; the reference both use is in contact_reference.py.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from core.domain import CHANNELS, Channel, ChannelConsent, CustomerProfile, Identity, Purpose
from core.domain import SendMessage as Send
from policy.contact import SentRecord
from policy.engine import Facts, PolicyEngine
from policy.escalation import MessageFacts
from policy.loader import load_policy
from policy.model import ConsentRule, FrequencyCap, Policy, QuietHours
from tests.policy.contact_reference import (
    BOOL,
    DAY_MINUTES,
    UNKNOWN_ZONES,
    ZONE,
    ZONES,
    crosses_transition,
    one_in,
    property_settings,
    quiet_local,
    quiet_window,
    resolve_zone,
    to_clock,
    to_minutes,
    transitions,
    uniform_instant,
)

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
ENGINE_EXAMPLES = 4_000


# --- the engine end to end ------------------------------------------------------------------


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
        start, end = quiet_window(draw)
        quiet = QuietHours(
            start=to_clock(start), end=to_clock(end),
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
            assert not quiet_local(local, to_minutes(quiet.start), to_minutes(quiet.end)), (
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
