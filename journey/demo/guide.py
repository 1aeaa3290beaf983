"""The seed scenario at scale: a population downloads the buyer's guide; some then show a
buying signal (pricing-page views). The orchestrated journey (``guide_to_sales`` in
``prompts/journeys.yaml``) sends them to sales and sends them no nurture; the others get the
nurture. The control group gets the static schedule: the nurture after a day, whatever they did.

:func:`simulate` runs it through the product itself (the signals API's service, the stepper,
the agent, the policy gate and the outbox) under a simulated clock, with
customers who respond at known, seeded rates depending on what they got: what a demo shows on
the console's journey page, what the scenario test checks and what the bench times.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.clock import FixedClock
from core.domain import Identity
from core.inbox import Agent

JOURNEY = "guide_to_sales"
#: the simulation's smallest step of time
TICK = timedelta(hours=1)
#: the chance a customer converts within the goal window, by whether they showed a buying
#: signal and what they got: a salesperson, the nurture email, or the static email
RATES: dict[tuple[bool, str], float] = {
    (True, "sales"): 0.35, (True, "static"): 0.15,
    (False, "nurture"): 0.06, (False, "static"): 0.05,
}


@dataclass
class Scenario:
    customers: int = 300
    #: the share who view the pricing page twice after the guide
    signal_share: float = 0.3
    #: downloads are spread over this many days
    days: int = 7
    seed: int = 7
    rates: dict[tuple[bool, str], float] = field(default_factory=lambda: dict(RATES))
    #: a person resolves a sales handoff this long after it opened (None: they stay open)
    resolve_after: timedelta | None = timedelta(hours=4)
    email_domain: str = "guide.example.com"


@dataclass
class Outcome:
    customers: list[str]
    signal: set[str]
    got: dict[str, str]
    converted: set[str]
    events: int


def simulate(container: Any, clock: FixedClock, scenario: Scenario,
             progress: Callable[[int, int], None] | None = None) -> Outcome:
    """Run the scenario from ``clock.now()`` to the end of the last goal window (a day after
    the last download plus 14 days), the clock jumping to the next moment something happens
    (an event, a due job or delivery, a handoff to resolve), an hour at least."""
    rng = random.Random(scenario.seed)
    store = container.store
    start = clock.now()
    who: list[str] = []
    signal: set[str] = set()
    due: list[tuple[datetime, dict[str, Any]]] = []
    spread = timedelta(days=scenario.days) / max(1, scenario.customers)
    for i in range(scenario.customers):
        email = f"buyer{i}@{scenario.email_domain}"
        profile = store.create_customer(
            [Identity(kind="email", value=email)], "consideration", name=f"Buyer {i}",
            timezone="America/New_York",
            consent={"email": {"service": "granted", "marketing": "granted"}})
        who.append(profile.id)
        at = start + spread * i
        ref = {"email": email}
        due.append((at, {"id": f"guide-{scenario.seed}-{i}", "type": "content_download",
                         "customer": ref, "properties": {"asset": "buyers_guide"}}))
        if rng.random() < scenario.signal_share:
            signal.add(profile.id)
            for n, minutes in enumerate((40, 95)):
                due.append((at + timedelta(minutes=minutes), {
                    "id": f"guide-{scenario.seed}-{i}-pv{n}", "type": "page_view",
                    "customer": ref, "properties": {"page": "pricing"}}))
    end = start + timedelta(days=scenario.days + 16)
    got: dict[str, str] = {}
    converted: set[str] = set()
    index = {c: i for i, c in enumerate(who)}
    worker = container.make_workers(1, prefix="demo").workers[0]
    hours = int((end - start).total_seconds() // 3600)
    posted = 0
    seen_since = start
    while True:
        now = clock.now()
        ready = sorted((d for d in due if d[0] <= now), key=lambda d: d[0])
        due = [d for d in due if d[0] > now]
        if ready:
            batch = [{**event, "occurred_at": at.isoformat()} for at, event in ready]
            for chunk in range(0, len(batch), 500):
                posted += container.signals.ingest(batch[chunk:chunk + 500]).accepted
        while worker.run_once():
            pass
        # what each customer got (once they got it): they respond to it
        for cid, path in _what_they_got(store, seen_since).items():
            if cid in got or cid not in index:
                continue
            got[cid] = path
            if rng.random() < scenario.rates.get((cid in signal, path), 0.0):
                after = timedelta(hours=rng.randint(6, 24 * 10))
                converted.add(cid)
                due.append((now + after, {
                    "id": f"guide-{scenario.seed}-{index[cid]}-buy", "type": "checkout_completed",
                    "customer": {"email": f"buyer{index[cid]}@{scenario.email_domain}"}}))
        seen_since = now
        resolve_at = _resolve_old_handoffs(container, now, scenario.resolve_after)
        if progress is not None:
            progress(int((now - start).total_seconds() // 3600), hours)
        # on to the next moment anything happens: an event, a job, a delivery, a person
        later = min([d[0] for d in due] + [t for t in (
            store.jobs.next_due(), store.outbox_queue.next_due(), resolve_at) if t is not None],
            default=None)
        if later is None or later > end:
            break
        # at most hourly: what falls within the hour is taken together (each event keeps its
        # own time; a step runs up to an hour late, as with a worker polling hourly)
        clock.advance(seconds=max(TICK.total_seconds(), (later - now).total_seconds()))
    return Outcome(customers=who, signal=signal, got=got, converted=converted, events=posted)


def _what_they_got(store: Any, since: datetime) -> dict[str, str]:
    """Who got what since ``since``: sales (a handoff), or the journey's email (nurture or
    static)."""
    out = {}
    for r in store.enrolments.steps(JOURNEY, since=since):
        if r["step"] == "alert_sales" and r["outcome"] == "escalated":
            out[r["customer_id"]] = "sales"
        elif r["step"] in ("nurture", "static_nurture") and r["outcome"] in ("sent", "deferred"):
            out[r["customer_id"]] = "static" if r["step"] == "static_nurture" else "nurture"
    return out


def _resolve_old_handoffs(container: Any, now: datetime,
                          after: timedelta | None) -> datetime | None:
    """Sales works the alerts: a handoff open for ``after`` is resolved. Returns when the next
    open one is due (None: none, or they stay open)."""
    if after is None:
        return None
    handoffs = container.handoffs
    agent = Agent(name="Sales demo", queues=None)
    waiting = []
    for view in handoffs.list(agent, status="open", queue="sales"):
        if view.created_at + after <= now:
            handoffs.claim(agent, view.id)
            handoffs.resolve(agent, view.id, outcome="resolved", note="Called: demo booked.")
        else:
            waiting.append(view.created_at + after)
    return min(waiting, default=None)


def seed_guide(container: Any, customers: int = 200, days: int = 5,
               progress: Callable[[int, int], None] | None = None) -> Outcome | None:
    """The demo's history of ``guide_to_sales``: the scenario simulated over the past
    ``days + 16`` days on the demo database, so the console's journey page has both arms to
    show. None when it is there already, or the journeys file has no such journey."""
    from journey.runtime import build_container
    from memory.vector import InMemoryVectorMemory

    journey = container.journeys.get().get(JOURNEY) if container.journeys else None
    if journey is None or not journey.multi_step or \
            container.store.enrolments.for_journey(JOURNEY):
        return None
    clock = FixedClock(container.store.clock.now() - timedelta(days=days + 16))
    # the same database under a clock of the past; its proactive turns' messages need no
    # vector history of their own
    past = build_container(container.settings, clock=clock, embedder=container.embedder,
                           classifier=container.classifier, knowledge=container.knowledge,
                           memory=InMemoryVectorMemory(container.embedder))
    try:
        return simulate(past, clock, Scenario(customers=customers, days=days), progress)
    finally:
        past.close()
