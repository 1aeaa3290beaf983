"""Journeys with steps, run by the workers: enrol, step, convert, exit.

When a journey with ``steps`` fires, its job (``kind="journey"``, queued by
:mod:`journey.signals` with the trigger's cool-down, tags and cancels) comes here instead of
waking the agent: :meth:`JourneyStepper.enrol` pins the journey's version, puts the customer in
the holdout or the treatment (deterministic by customer: :func:`journey.experiments.in_holdout`)
and queues the first step. :meth:`JourneyStepper.step` runs one step job:

- first, the exits: the goal reached (when it ends the journey), a declared event since entering,
  a stage, a person owning the conversation, an opt-out;
- a ``wait`` sets its deadline and the job sleeps until then (an event it cares about wakes it
  early: :meth:`JourneyStepper.on_events`); ``wait_until`` leaves on the event or the timeout;
- ``branch``, ``split`` and ``exit`` take no time: the stepper goes on to the next step in the
  same job until it reaches an action or a wait, and writes the move in one transaction;
- ``send`` / ``escalate`` / ``crm`` wake the agent proactively with that action (its own job,
  so the decision is made at most once per step: ``run_proactive`` is idempotent per job), and
  the policy gate decides as for any turn; ``agent`` offers its options in order and the first
  one the policy lets through runs.

Goal conversions are counted as events arrive, for every enrolment still in its goal window,
holdout and exited ones included (:meth:`JourneyStepper.on_events`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from core.clock import Clock
from core.domain import CustomerProfile, Decision, Event, Verdict
from journey.experiments import (
    AdaptiveAllocation,
    ArmCounts,
    FixedAllocation,
    choose_arm,
    in_holdout,
)
from memory.enrolments import Enrolment, StepLog, Transition
from memory.jobs import Job
from memory.store import OPEN_HANDOFF, Store
from policy.journey_flow import Step, next_index, sends
from policy.journeys import Journey, JourneysProvider

log = logging.getLogger(__name__)

#: how far back a branch's event conditions can look
CONDITION_LOOKBACK = timedelta(days=30)
#: ``run_proactive(job)``: the agent's proactive turn, through the policy gate
Proactive = Callable[[Job], Decision]


@dataclass
class Pinned:
    """A journey as it was at one version: what its enrolments follow."""

    journey: Journey
    templates: dict[str, str]
    version: str

    def index(self, step_id: str) -> int:
        return next(i for i, s in enumerate(self.journey.steps) if s.id == step_id)

    def step(self, step_id: str) -> Step:
        return self.journey.steps[self.index(step_id)]

    @property
    def reads_events(self) -> bool:
        """Whether a step or an exit looks at the customer's events (else none is read)."""
        j = self.journey
        return bool(j.exits.events) or any(
            s.wait_until is not None or any(a.when is not None and a.when.events is not None
                                            for a in s.branch or [])
            for s in j.steps)


@dataclass
class JourneyStepper:
    store: Store
    journeys: JourneysProvider
    clock: Clock
    proactive: Proactive
    #: draws the adaptive variants (a seeded generator in tests and benches)
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    _pinned: dict[tuple[str, str], Pinned] = field(default_factory=dict)

    # --- entering -----------------------------------------------------------------------------

    def enrol(self, job: Job) -> dict[str, Any]:
        """A journey with steps fired for the customer (its ``journey`` job)."""
        journey = self.journeys.get().get(job.journey or "")
        if journey is None or not journey.enabled or not journey.multi_step:
            return {"cancelled": f"stale: journey {job.journey} is no longer defined with steps"}
        customer_id = job.customer_id or ""
        if self.store.get_customer(customer_id) is None:
            return {"cancelled": f"stale: customer {customer_id} is gone"}
        pinned = self.pin(journey)
        holdout = journey.holdout
        control = holdout is not None and in_holdout(journey.name, customer_id, holdout.share,
                                                     holdout.salt)
        first = (holdout.goto if holdout is not None and control else journey.steps[0].id)
        # the customer entered with the event that fired the trigger (a branch's "since
        # entering" and the goal's window count from then), not when a worker took the job
        now = self.clock.now()
        when = job.payload.get("event_at") or job.payload.get("fired_at")
        entered = min(now, datetime.fromisoformat(str(when))) if when else now
        enrolment = self.store.enrolments.enrol(
            journey=journey.name, version=pinned.version, customer_id=customer_id,
            arm="holdout" if control else "treatment", step=first,
            trigger_event_id=str(job.payload.get("event_id") or "") or None,
            goal_until=entered + journey.goal.within if journey.goal else None,
            once_ever=journey.reentry == "never", entered_at=entered,
            logs=[StepLog(step="entry", kind="entry", outcome="entered",
                          detail="holdout" if control else "treatment")],
        )
        if enrolment is None:
            return {"skipped": f"already in journey {journey.name} "
                               f"({'ever' if journey.reentry == 'never' else 'now'})"}
        return {"enrolment_id": enrolment.id, "arm": enrolment.arm, "version": pinned.version}

    def pin(self, journey: Journey) -> Pinned:
        templates = self.journeys.get().templates
        version = journey.fingerprint(templates)
        used = {s.template: templates[s.template] for s in sends(journey.steps)}
        self.store.enrolments.pin(journey.name, version,
                                  {"journey": journey.model_dump(mode="json"),
                                   "templates": used})
        key = (journey.name, version)
        if key not in self._pinned:
            self._pinned[key] = Pinned(journey, used, version)
        return self._pinned[key]

    def pinned(self, journey: str, version: str) -> Pinned | None:
        key = (journey, version)
        if key not in self._pinned:
            definition = self.store.enrolments.definition(journey, version)
            if definition is None:
                return None
            self._pinned[key] = Pinned(Journey.model_validate(definition["journey"]),
                                       dict(definition["templates"]), version)
        return self._pinned[key]

    # --- stepping -----------------------------------------------------------------------------

    def step(self, job: Job) -> dict[str, Any]:
        """One step job: returns the job's result (``{"snooze": when}``: due again then)."""
        store = self.store
        enrolment = store.enrolments.get(str(job.payload["enrolment_id"]))
        if enrolment is None or enrolment.status != "active" or \
                enrolment.seq != int(job.payload["seq"]) or enrolment.step is None:
            return {"skipped": "the enrolment moved on or ended"}
        pinned = self.pinned(enrolment.journey, enrolment.version)
        if pinned is None:
            store.enrolments.end(enrolment, "version_missing")
            return {"exited": "version_missing"}
        profile = store.get_customer(enrolment.customer_id)
        now = self.clock.now()
        if profile is None:
            store.enrolments.end(enrolment, "customer_gone")
            return {"exited": "customer_gone"}
        # a branch may look back before the customer entered (``within``)
        since = min(enrolment.entered_at, now - CONDITION_LOOKBACK)
        events = store.recent_events(profile.id, since=since, limit=500) \
            if pinned.reads_events else []
        reason = self._exit_reason(pinned.journey, enrolment, profile, events)
        if reason is not None:
            store.enrolments.end(enrolment, reason, [StepLog(
                step=enrolment.step, kind=pinned.step(enrolment.step).kind, outcome="exited",
                detail=reason)])
            return {"exited": reason}
        return self._walk(job, pinned, enrolment, profile, events, now)

    def _walk(self, job: Job, pinned: Pinned, enrolment: Enrolment, profile: CustomerProfile,
              events: list[Event], now: datetime) -> dict[str, Any]:
        steps = pinned.journey.steps
        change = Transition()
        i: int | None = pinned.index(enrolment.step or "")
        first = True
        for _ in range(len(steps) + 1):  # steps without time cannot loop (validated)
            assert i is not None
            step = steps[i]
            kind = step.kind
            if kind in ("wait", "wait_until"):
                deadline = enrolment.wait_until if first else None
                if deadline is None:
                    timeout = step.wait if step.wait is not None else \
                        step.wait_until.timeout  # type: ignore[union-attr]
                    deadline = now + timeout
                    change.changes.update(step=step.id, wait_until=deadline)
                    if first:  # this job sleeps until then
                        self._write(enrolment, change)
                        return {"snooze": deadline.isoformat()}
                    change.next_due = deadline
                    change.advance = True
                    return self._moved(enrolment, change)
                target, outcome = self._wait_over(step, steps, i, deadline, events, now)
                if outcome is None:  # woken early by an event it does not wait for
                    return {"snooze": deadline.isoformat()}
                change.logs.append(StepLog(step=step.id, kind=kind, outcome=outcome))
                change.changes["wait_until"] = None
                i = target
            elif kind in ("send", "escalate", "crm", "agent"):
                if not first:  # its own job: one decision per step, at most once
                    change.changes.update(step=step.id, wait_until=None)
                    change.next_due = now
                    change.advance = True
                    return self._moved(enrolment, change)
                decision, chosen, codes, outcome = self._act(job, pinned, enrolment, step)
                change.logs.append(StepLog(step=step.id, kind=kind, outcome=outcome,
                                           detail=chosen, reason_codes=codes,
                                           decision_id=decision.id if decision else None))
                i = next_index(steps, i)
            elif kind == "branch":
                target_id = next(arm.goto for arm in step.branch or []
                                 if arm.when is None or arm.when.holds(
                                     profile, events, now, enrolment.entered_at))
                change.logs.append(StepLog(step=step.id, kind=kind, outcome="branch",
                                           detail=target_id))
                i = pinned.index(target_id)
            elif kind == "split":
                variant = self._variant(pinned, enrolment, step)
                enrolment = enrolment.model_copy(
                    update={"variants": {**enrolment.variants, step.id: variant}})
                change.changes["variants"] = enrolment.variants
                change.logs.append(StepLog(step=step.id, kind=kind, outcome="variant",
                                           detail=variant))
                goto = next(v.goto for v in step.split.variants  # type: ignore[union-attr]
                            if v.name == variant)
                i = pinned.index(goto)
            else:  # exit
                change.logs.append(StepLog(step=step.id, kind=kind, outcome="exited",
                                           detail=step.exit))
                return self._finish(enrolment, change, f"exit:{step.exit}")
            first = False
            if i is None:
                return self._finish(enrolment, change, "completed")
        raise RuntimeError(f"journey {pinned.journey.name}: steps did not settle")

    def _wait_over(self, step: Step, steps: list[Step], i: int, deadline: datetime,
                   events: list[Event], now: datetime) -> tuple[int | None, str | None]:
        """Where a wait goes now and what happened (None: it goes on waiting)."""
        def go(target: str | None) -> int | None:
            if target is None:
                return next_index(steps, i)
            return next(j for j, s in enumerate(steps) if s.id == target)

        if step.wait_until is not None:
            started = deadline - step.wait_until.timeout
            seen = [e for e in events if step.wait_until.matches(e)
                    and started <= e.occurred_at <= now]
            if seen:
                return go(step.wait_until.on_event), "event"
            if now >= deadline:
                return go(step.wait_until.on_timeout), "timeout"
            return None, None
        if now >= deadline:
            return go(None), "waited"
        return None, None

    def _write(self, enrolment: Enrolment, change: Transition) -> None:
        self.store.enrolments.apply(enrolment, change)

    def _moved(self, enrolment: Enrolment, change: Transition) -> dict[str, Any]:
        moved = self.store.enrolments.apply(enrolment, change)
        return {"step": change.changes.get("step"), "moved": moved}

    def _finish(self, enrolment: Enrolment, change: Transition, reason: str) -> dict[str, Any]:
        self.store.enrolments.end(enrolment, reason, change.logs, changes=change.changes)
        return {"exited": reason}

    # --- actions --------------------------------------------------------------------------------

    def _act(self, job: Job, pinned: Pinned, enrolment: Enrolment,
             step: Step) -> tuple[Decision | None, str | None, list[str], str]:
        """Run the step's action (or an agent step's options in order) through the agent's
        proactive turn; returns the decision, the option chosen, the reason codes and the
        outcome (sent, deferred, held, escalated, crm, suppressed)."""
        options = step.agent.options if step.agent else [step]
        codes: list[str] = []
        decision: Decision | None = None
        for n, option in enumerate(options):
            sub = job if n == 0 else job.model_copy(update={"id": f"{job.id}_{n}"})
            decision = self.proactive(sub.model_copy(update={"payload": {
                **job.payload, **self._trigger(pinned, enrolment, option)}}))
            verdict = _verdict(decision)
            outcome = _outcome(option, verdict)
            if outcome != "suppressed":
                chosen = option.id if step.agent else None
                return decision, chosen, codes + (verdict.reason_codes if verdict else []), \
                    outcome
            codes += [f"{option.id}:{c}" if step.agent else c
                      for c in (verdict.reason_codes if verdict else ["no_action"])]
        return decision, None, codes, "suppressed"

    def _trigger(self, pinned: Pinned, enrolment: Enrolment, step: Step) -> dict[str, Any]:
        action = {k: getattr(step, k).model_dump(mode="json")
                  for k in ("send", "escalate", "crm") if getattr(step, k) is not None}
        return {
            "journey": pinned.journey.name, "version": pinned.version, "step": step.id,
            "enrolment_id": enrolment.id, "arm": enrolment.arm,
            "description": pinned.journey.description or pinned.journey.name,
            "action": action,
            "templates": {step.send.template: pinned.templates[step.send.template]}
            if step.send is not None else {},
        }

    def _variant(self, pinned: Pinned, enrolment: Enrolment, step: Step) -> str:
        if step.id in enrolment.variants:  # a retried step keeps its draw
            return enrolment.variants[step.id]
        split = step.split
        assert split is not None
        seen = self.store.enrolments.variant_counts(pinned.journey.name, step.id)
        arms = [ArmCounts(v.name, *seen.get(v.name, (0, 0))) for v in split.variants]
        allocation = AdaptiveAllocation(min_share=split.min_share) \
            if split.allocation == "adaptive" else \
            FixedAllocation({v.name: v.weight for v in split.variants})
        variant = choose_arm(arms, allocation, self.rng)
        self.store.enrolments.record_variant(enrolment, step.id, variant)
        return variant

    # --- exits and events -----------------------------------------------------------------------

    def _exit_reason(self, journey: Journey, enrolment: Enrolment, profile: CustomerProfile,
                     events: Sequence[Event]) -> str | None:
        if journey.goal is not None and journey.goal.exits and enrolment.converted_at:
            return "goal"
        exits = journey.exits
        if exits.events:
            seen = [e for e in events if e.type in exits.events
                    and e.occurred_at >= enrolment.entered_at]
            if seen:
                return f"event:{seen[0].type}"
        if exits.stage_in and profile.lifecycle_stage in exits.stage_in:
            return f"stage:{profile.lifecycle_stage}"
        if exits.opt_out and _opted_out(profile):
            return "opt_out"
        if exits.handoff_open and any(h.status in OPEN_HANDOFF
                                      for h in self.store.handoffs(profile.id)):
            return "handoff"
        return None

    def on_events(self, events: Sequence[Event], fired: dict[str, list[str]]) -> int:
        """Accepted events: count the goals they reach, wake the enrolments waiting for them
        (or exiting on them), and end the enrolments a firing journey ``cancels`` (by tag).
        ``fired``: the journeys each customer's events fired. Returns how many were woken."""
        if not events:
            return 0
        store = self.store
        current = self.journeys.get()
        for customer_id, names in fired.items():
            tags = {t for n in names if (j := current.get(n)) is not None for t in j.cancels}
            replaced = [j.name for j in current.journeys if j.tag in tags and j.multi_step]
            if not replaced:
                continue
            for enrolment in store.enrolments.active(customer_id, replaced):
                store.enrolments.end(enrolment, f"replaced:{'+'.join(names)}"[:120])
        since = min(e.occurred_at for e in events)
        by_customer: dict[str, list[Event]] = {}
        for e in events:
            by_customer.setdefault(e.customer_id, []).append(e)
        wake: dict[str, Enrolment] = {}
        for enrolment in store.enrolments.watching(list(by_customer), since):
            pinned = self.pinned(enrolment.journey, enrolment.version)
            if pinned is None:
                continue
            journey = pinned.journey
            mine = by_customer.get(enrolment.customer_id, [])
            goal = journey.goal
            if goal is not None and enrolment.converted_at is None and enrolment.goal_until:
                hit = next((e for e in sorted(mine, key=lambda e: e.occurred_at)
                            if goal.matches(e)
                            and enrolment.entered_at <= e.occurred_at <= enrolment.goal_until),
                           None)
                if hit is not None and store.enrolments.convert(enrolment.id, hit.occurred_at,
                                                                hit.id) and goal.exits:
                    wake[enrolment.id] = enrolment
            if enrolment.status == "active" and any(
                    e.type in _wakes(journey) for e in mine):
                wake[enrolment.id] = enrolment
        return store.enrolments.wake(list(wake.values()))


def _wakes(journey: Journey) -> set[str]:
    """The event types that may move an enrolment on before its wait ends."""
    out = set(journey.exits.events)
    out |= {s.wait_until.event for s in journey.steps if s.wait_until is not None}
    return out


def _opted_out(profile: CustomerProfile) -> bool:
    marketing = [c.marketing for c in profile.consent.values()]
    return "revoked" in marketing and "granted" not in marketing


def _verdict(decision: Decision) -> Verdict | None:
    return decision.verdicts[0] if decision.verdicts else None


def _outcome(step: Step, verdict: Verdict | None) -> str:
    if verdict is None or verdict.outcome == "deny":
        return "suppressed"
    if verdict.approval_id:
        return "held"
    if verdict.deliver_at is not None:
        return "deferred"
    return {"send": "sent", "escalate": "escalated", "crm": "crm"}[step.kind]
