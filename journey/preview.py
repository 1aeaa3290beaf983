"""Preview a journey before launch: run it over existing profiles (or a synthetic population) in
simulated time, sending nothing, and say what each customer would get, when, on which channel,
and what the policy would suppress and why.

The preview runs the product's own code, not a model of it: a throwaway database (SQLite in a
temporary folder) gets a copy of the profiles and their recent events, the journey fires for
each of them, and workers over that database step the enrolments with the real stepper, agent
and policy gate under a simulated clock that jumps from one due job to the next. The outbox
relay never runs, so nothing leaves: what *would* have been sent is read from the decisions'
verdicts (the channel after any switch, a quiet-hours delivery time, the reason codes of a
suppression). The customers' real message history is not copied, so frequency caps count only
what the preview itself would send.
"""

from __future__ import annotations

import random
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from core.clock import FixedClock, SystemClock
from core.domain import CustomerProfile, Decision, Event, Identity
from core.settings import Settings
from policy.journeys import Journey, load_journeys

#: ``progress(what, done, total)``: customers entered, then simulated hours
Progress = Callable[[str, int, int], None]
#: how far ahead a preview looks when the journey declares no goal window
DEFAULT_HORIZON = timedelta(days=30)
#: events copied per customer (what branches and stage rules read)
EVENTS_COPIED = timedelta(days=30)

_ZONES = ["America/New_York", "America/Los_Angeles", "Europe/London", "Europe/Berlin",
          "Asia/Tokyo", "Australia/Sydney", "America/Sao_Paulo", "UTC"]
_STAGES = ["awareness", "consideration", "decision", "retention"]


@dataclass
class PreviewRow:
    """One thing the journey did or would do for one customer."""

    customer_id: str
    name: str
    arm: str
    at: datetime
    step: str
    kind: str
    #: the channel (after a switch), the queue, or the CRM change
    target: str
    #: would_send | deferred | held | would_escalate | would_update_crm | suppressed |
    #: cancelled (stale when due) | entered | waited | event | timeout | branch | variant |
    #: exited
    outcome: str
    reasons: list[str] = field(default_factory=list)
    #: a deferred message's delivery time (quiet hours)
    deliver_at: datetime | None = None
    detail: str = ""


@dataclass
class PreviewResult:
    journey: str
    description: str
    version: str
    source: str
    started: datetime
    horizon: datetime
    customers: int
    by_arm: dict[str, int]
    rows: list[PreviewRow]
    #: how the enrolments ended by the horizon (a journey with steps)
    exits: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.rows)

    @property
    def suppressed_by(self) -> dict[str, int]:
        found: Counter[str] = Counter()
        for r in self.rows:
            if r.outcome == "suppressed":
                found.update(r.reasons or ["unknown"])
        return dict(found.most_common())

    @property
    def by_channel(self) -> dict[str, int]:
        return dict(Counter(r.target for r in self.rows
                            if r.outcome in ("would_send", "deferred", "held")).most_common())



def synthetic_population(n: int, seed: int, start: datetime) -> list[CustomerProfile]:
    """``n`` made-up customers with a seeded mix of timezones, stages, consent and intent
    scores: about 80% with marketing email consent (5% withdrawn), 30% with SMS and a phone."""
    rng = random.Random(seed)
    people = []
    for i in range(n):
        ids = [Identity(kind="email", value=f"preview{i}@example.com")]
        consent: dict[str, Any] = {}
        roll = rng.random()
        consent["email"] = {"service": "granted",
                            "marketing": "granted" if roll < 0.8 else
                            "revoked" if roll < 0.85 else "unknown"}
        if rng.random() < 0.3:
            ids.append(Identity(kind="phone", value=f"+1415555{i % 10000:04d}"))
            consent["sms"] = {"service": "granted", "marketing": "granted"}
        people.append(CustomerProfile(
            id=f"cus_preview{i:05d}", name=f"Preview {i}", identities=ids,
            attributes={"intent_scores": {"purchase": round(rng.random() * 0.6, 2),
                                          "research": round(rng.random() * 0.6, 2)}},
            lifecycle_stage=rng.choice(_STAGES), consent=consent,
            timezone=rng.choice(_ZONES), created_at=start, updated_at=start))
    return people


def existing_profiles(settings: Settings, limit: int) -> tuple[list[CustomerProfile],
                                                               dict[str, list[Event]]]:
    """Up to ``limit`` live profiles of the configured database, with their recent events."""
    from memory.db import make_engine
    from memory.store import Store

    engine = make_engine(settings.resolved_database_url)
    try:
        store = Store(engine)
        profiles: list[CustomerProfile] = []
        for page in store.bulk.export_pages(page=min(limit, 1000)):
            profiles += [p.profile for p in page][: limit - len(profiles)]
            if len(profiles) >= limit:
                break
        since = SystemClock().now() - EVENTS_COPIED
        events = {p.id: store.recent_events(p.id, since=since, limit=200) for p in profiles}
    finally:
        engine.dispose()
    return profiles, events


def preview(
    settings: Settings,
    name: str,
    profiles: list[CustomerProfile],
    *,
    events: dict[str, list[Event]] | None = None,
    journeys_file: Path | None = None,
    start: datetime | None = None,
    horizon: timedelta | None = None,
    source: str = "",
    progress: Progress | None = None,
) -> PreviewResult:
    """Run journey ``name`` (from ``journeys_file``, else the one in force) for ``profiles`` as
    if its trigger fired for each of them at ``start``; nothing is sent."""
    from journey.runtime import build_container

    path = journeys_file or settings.journeys_path
    journeys = load_journeys(path)
    journey = journeys.get(name)
    if journey is None:
        known = ", ".join(j.name for j in journeys.journeys)
        raise LookupError(f"no journey {name!r} in {path or 'the shipped journeys'} "
                          f"(there are: {known})")
    clock = FixedClock(start or SystemClock().now())
    began = clock.now()
    until = began + (horizon or (journey.goal.within if journey.goal else DEFAULT_HORIZON))
    with tempfile.TemporaryDirectory(prefix="journey-preview-") as tmp:
        scratch = settings.model_copy(update={
            "database_url": f"sqlite:///{tmp}/preview.db", "data_dir": Path(tmp),
            "chroma_url": None, "brain": "rules", "workers": 0, "vector_write_behind": False,
            "handoff_webhook_url": None, "crm_webhook_url": None, "journeys_path": path,
            "retention_days": 0,
        })
        container = build_container(scratch, clock=clock)
        try:
            _copy(container, profiles, events or {})
            _fire(container, journey, profiles, progress)
            _run(container, clock, until, progress)
            rows = _rows(container, journey, profiles)
            version = journey.fingerprint(journeys.templates) if journey.multi_step else \
                journeys.version
            enrolments = container.store.enrolments.for_journey(name)
            by_arm = Counter(e.arm for e in enrolments) if journey.multi_step \
                else Counter({"treatment": len(profiles)})
            exits = Counter(e.exit_reason or "still in the journey" for e in enrolments)
        finally:
            container.close()
    return PreviewResult(
        journey=name, description=journey.description, version=version, source=source,
        started=began, horizon=until, customers=len(profiles),
        by_arm={"treatment": by_arm.get("treatment", 0), "holdout": by_arm.get("holdout", 0)},
        rows=rows, exits=dict(exits.most_common()))


def _copy(container: Any, profiles: Iterable[CustomerProfile],
          events: dict[str, list[Event]]) -> None:
    store = container.store
    for p in profiles:
        store.create_customer(p.identities, p.lifecycle_stage, name=p.name,
                              timezone=p.timezone or "UTC", attributes=p.attributes,
                              consent={k: v.model_dump() for k, v in p.consent.items()},
                              customer_id=p.id)
        for e in events.get(p.id, []):
            store.add_event(e.model_copy(update={"customer_id": p.id}))


def _fire(container: Any, journey: Journey, profiles: list[CustomerProfile],
          progress: Progress | None) -> None:
    """The journey's job for each customer, as its trigger would queue it (after its delay)."""
    jobs = container.store.jobs
    now = container.store.clock.now()
    for n, p in enumerate(profiles, 1):
        jobs.enqueue("journey", f"journey:{journey.name}:{p.id}:preview", {
            "journey": journey.name, "version": "preview", "event_id": None,
            "event_type": journey.trigger.event, "events": [], "fired_at": now.isoformat(),
            "description": journey.description or journey.name, "cancelled_jobs": [],
        }, due_at=now + journey.delay, customer_id=p.id, journey=journey.name, tag=journey.tag)
        if progress is not None and (n % 100 == 0 or n == len(profiles)):
            progress("customers entered", n, len(profiles))


def _run(container: Any, clock: FixedClock, until: datetime, progress: Progress | None) -> None:
    """Run due jobs, then jump the clock to the next due job, until none is due before
    ``until`` (the outbox relay never runs: nothing leaves)."""
    worker = container.make_workers(1, prefix="preview").workers[0]
    began = clock.now()
    while True:
        while worker.run_jobs(limit=50):
            pass
        due = container.store.jobs.next_due()
        if due is None or due > until:
            return
        if due > clock.now():
            clock.advance(seconds=(due - clock.now()).total_seconds())
        if progress is not None:
            progress("simulated hours", int((clock.now() - began).total_seconds() // 3600),
                     int((until - began).total_seconds() // 3600))


_ACTION_OUTCOME = {"send_message": "would_send", "escalate_to_human": "would_escalate",
                   "update_crm": "would_update_crm"}


def _rows(container: Any, journey: Journey, profiles: list[CustomerProfile]) -> list[PreviewRow]:
    store = container.store
    names = {p.id: p.name or p.id for p in profiles}
    arms: dict[str, str] = {}
    rows: list[PreviewRow] = []
    decisions: dict[str, Decision] = {}
    for p in profiles:
        for d in store.decisions(customer_id=p.id):
            decisions[d.id] = d
    if journey.multi_step:
        for e in store.enrolments.for_journey(journey.name):
            arms[e.customer_id] = e.arm
        for r in store.enrolments.steps(journey.name):
            cid = r["customer_id"]
            at = r["at"]
            decision = decisions.get(r["decision_id"] or "")
            if decision is not None:
                arm = arms.get(cid, "treatment")
                # an agent step's options the policy refused before the one it took
                rows += [PreviewRow(customer_id=cid, name=names[cid], arm=arm,
                                    at=decision.created_at, step=r["step"], kind=r["kind"],
                                    target=code.split(":", 1)[0], outcome="suppressed",
                                    reasons=[code.split(":", 1)[1]], detail="option refused")
                         for code in r["reason_codes"] or [] if ":" in code]
                rows += _decision_rows(decision, cid, names[cid], arm, r["step"], r["kind"])
                continue
            rows.append(PreviewRow(
                customer_id=cid, name=names[cid], arm=arms.get(cid, "treatment"),
                at=at if at.tzinfo else at.replace(tzinfo=store.clock.now().tzinfo),
                step=r["step"], kind=r["kind"], target="", outcome=r["outcome"],
                reasons=list(r["reason_codes"] or []), detail=r["detail"] or ""))
    else:
        for d in sorted(decisions.values(), key=lambda d: d.created_at):
            rows += _decision_rows(d, d.customer_id, names.get(d.customer_id, d.customer_id),
                                   "treatment", "actions", "actions")
    for job in store.jobs.list(kind="journey", status="cancelled", limit=100_000):
        cid = job.customer_id or ""
        rows.append(PreviewRow(customer_id=cid, name=names.get(cid, cid), arm="treatment",
                               at=job.due_at, step="trigger", kind="journey",
                               target="", outcome="cancelled",
                               reasons=[(job.error or "").split(":", 1)[0]],
                               detail=job.error or ""))
    # the step log is in order per enrolment; one-step decisions by time
    rows.sort(key=lambda r: r.customer_id)
    return rows


def _decision_rows(d: Decision, cid: str, name: str, arm: str, step: str,
                   kind: str) -> list[PreviewRow]:
    out = []
    for v in d.verdicts:
        action = v.final or (d.proposed[v.action_index].model_dump(mode="json")
                             if v.action_index < len(d.proposed) else {})
        target = str(action.get("channel") or action.get("queue") or
                     ", ".join(k for k in ("task", "note", "stage") if action.get(k)) or "")
        if v.outcome == "deny":
            outcome = "suppressed"
        elif v.approval_id:
            outcome = "held"
        elif v.deliver_at is not None:
            outcome = "deferred"
        else:
            outcome = _ACTION_OUTCOME.get(v.tool, v.tool)
        out.append(PreviewRow(
            customer_id=cid, name=name, arm=arm, at=d.created_at, step=step, kind=kind,
            target=target, outcome=outcome, reasons=list(v.reason_codes),
            deliver_at=v.deliver_at, detail=v.detail))
    return out
