"""Multi-step journeys as data: the steps, the goal, the holdout and the exits of a journey.

A journey in ``prompts/journeys.yaml`` either has ``actions`` (one step: the trigger queues
them after ``delay``, as before) or ``steps``. A journey with steps *enrols* the customer when
its trigger fires; the enrolment is a row in the database that the workers step through:

- ``wait: 2d`` (a duration), ``wait_until: {event, where, timeout}`` (an event, or the timeout;
  ``on_event`` / ``on_timeout`` name where each goes);
- ``branch: [{when: {...}, goto: step}, ..., {goto: step}]``: the first ``when`` that holds
  (conditions over the profile's attributes, intent ``scores``, ``stage_in`` and ``events``);
- ``send`` / ``escalate`` / ``crm``: an action through the agent's proactive turn and the policy
  gate (consent, caps, quiet hours and channels still decide);
- ``agent: {options: [{id, send | escalate | crm}, ...]}``: the agent offers the options to
  the policy gate in the company's order of preference and takes the first it allows;
- ``split: {allocation: fixed | adaptive, min_share, variants: [{name, weight, goto}]}``: the
  variants (templates, channels, timings), allocated by weight or by Thompson sampling on the
  goal (:mod:`journey.experiments`);
- ``exit: reason``: the enrolment ends here.

A step goes to ``next`` when it names one, else to the step below it; past the last step the
enrolment is complete. The ``goal`` (an event within a window of entering) is counted for every
enrolment, holdout included; ``holdout`` keeps a deterministic share of customers out (they get
nothing, or go straight to its ``goto`` step: the static alternative). ``exits`` end an
enrolment early: a declared event, a stage, a person owning the conversation, an opt-out.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.domain import Channel, CustomerProfile, Event, Priority, Purpose, Queue
from policy.model_base import Duration, value_matches

StepKind = Literal["wait", "wait_until", "branch", "send", "escalate", "crm", "agent", "split",
                   "exit"]
#: the kinds that run through the agent and the policy gate
ACTION_KINDS = frozenset({"send", "escalate", "crm", "agent"})
STEP_KINDS: tuple[StepKind, ...] = ("wait", "wait_until", "branch", "send", "escalate", "crm",
                                    "agent", "split", "exit")
STEP_ID = r"^[a-z][a-z0-9_]{0,39}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventMatch(_Strict):
    """Events of ``event`` type whose properties match ``where`` (a value, or {gte, in, ...})."""

    event: str = Field(min_length=1, max_length=80)
    where: dict[str, Any] = Field(default_factory=dict)

    def matches(self, e: Event) -> bool:
        return e.type == self.event and all(
            value_matches(e.properties.get(k), v) for k, v in self.where.items())


class SendStep(_Strict):
    #: the preferred channel; the policy may switch it (no consent) or defer it (quiet hours)
    channel: Channel
    purpose: Purpose = "marketing"
    #: a key of the journeys file's ``templates``, rendered with profile facts
    template: str
    subject: str | None = None


class EscalateStep(_Strict):
    queue: Queue
    priority: Priority = "normal"
    reason: str = Field(min_length=1, max_length=500)


class CrmStep(_Strict):
    task: str | None = None
    note: str | None = None
    fields: dict[str, str | int | float | bool] = Field(default_factory=dict)


class EventCondition(EventMatch):
    """``count`` events of type ``event`` matching ``where``, within ``within`` of now (since
    the customer entered the journey when no window is given)."""

    count: int = Field(1, ge=1, le=1000)
    within: Duration | None = None


class Condition(_Strict):
    """Every part given must hold."""

    #: profile attributes: a value, or {gte, lte, gt, lt, ne, in}
    profile: dict[str, Any] = Field(default_factory=dict)
    #: intent scores (0..1), e.g. {purchase: {gte: 0.3}}
    scores: dict[str, Any] = Field(default_factory=dict)
    stage_in: list[str] = Field(default_factory=list)
    events: EventCondition | None = None

    def holds(self, profile: CustomerProfile, events: list[Event], now: Any,
              entered_at: Any) -> bool:
        attrs = profile.attributes
        if not all(value_matches(attrs.get(k), v) for k, v in self.profile.items()):
            return False
        scores = attrs.get("intent_scores") or {}
        if not all(value_matches(scores.get(k, 0.0), v) for k, v in self.scores.items()):
            return False
        if self.stage_in and profile.lifecycle_stage not in self.stage_in:
            return False
        if self.events is not None:
            since = now - self.events.within if self.events.within else entered_at
            seen = [e for e in events if self.events.matches(e) and since <= e.occurred_at <= now]
            if len(seen) < self.events.count:
                return False
        return True


class BranchArm(_Strict):
    #: no ``when``: the arm taken when no arm above it holds
    when: Condition | None = None
    goto: str = Field(pattern=STEP_ID)


class WaitUntil(EventMatch):
    timeout: Duration
    #: where the event leads (default: the next step)
    on_event: str | None = Field(None, pattern=STEP_ID)
    #: where the timeout leads (default: the next step)
    on_timeout: str | None = Field(None, pattern=STEP_ID)


class Variant(_Strict):
    name: str = Field(pattern=STEP_ID)
    goto: str = Field(pattern=STEP_ID)
    #: fixed allocation's weight (any positive scale)
    weight: float = Field(1.0, ge=0)


class Split(_Strict):
    allocation: Literal["fixed", "adaptive"] = "fixed"
    #: adaptive: each variant's minimum chance per enrolment
    min_share: float = Field(0.1, ge=0, le=0.5)
    variants: list[Variant] = Field(min_length=2, max_length=10)


class AgentChoice(_Strict):
    #: the actions the agent chooses among, in the company's order of preference: each an
    #: ``id`` (what the metrics call it) and one of ``send``, ``escalate`` or ``crm``
    options: list[Step] = Field(min_length=1, max_length=10)


class Step(_Strict):
    id: str = Field(pattern=STEP_ID)
    #: where to go after this step (default: the step below; past the last: complete)
    next: str | None = Field(None, pattern=STEP_ID)
    wait: Duration | None = None
    wait_until: WaitUntil | None = None
    branch: list[BranchArm] | None = Field(None, min_length=1)
    send: SendStep | None = None
    escalate: EscalateStep | None = None
    crm: CrmStep | None = None
    agent: AgentChoice | None = None
    split: Split | None = None
    exit: str | None = Field(None, min_length=1, max_length=80)

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"step {self.id!r} must have exactly one of {list(STEP_KINDS)}, "
                             f"has {kinds or 'none'}")
        if self.wait is not None and self.wait <= timedelta(0):
            raise ValueError(f"step {self.id!r}: wait must be positive")
        return self

    @property
    def kind(self) -> StepKind:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    def targets(self) -> list[str]:
        """The step ids this step may go to (besides the one below it)."""
        out = [self.next] if self.next else []
        if self.branch:
            out += [arm.goto for arm in self.branch]
        if self.wait_until:
            out += [t for t in (self.wait_until.on_event, self.wait_until.on_timeout) if t]
        if self.split:
            out += [v.goto for v in self.split.variants]
        return out


class Goal(EventMatch):
    """The conversion: an ``event`` matching ``where`` within ``within`` of entering."""

    within: Duration = timedelta(days=14)
    #: reaching the goal ends the enrolment (its remaining steps are not run)
    exits: bool = True


class Holdout(_Strict):
    #: the control group's share of customers (the same customers on every re-entry)
    share: float = Field(gt=0, le=0.5)
    #: the static alternative the control gets (a step id); none: the control gets nothing
    goto: str | None = Field(None, pattern=STEP_ID)
    #: changes who is in the control group (a new experiment)
    salt: str = ""


class Exits(_Strict):
    #: an event of one of these types ends the enrolment
    events: list[str] = Field(default_factory=list)
    #: the customer moved to one of these stages
    stage_in: list[str] = Field(default_factory=list)
    #: a person owns the conversation (an open handoff)
    handoff_open: bool = True
    #: the customer withdrew marketing consent on every channel
    opt_out: bool = True


def check_flow(name: str, steps: list[Step], holdout: Holdout | None,
               action_check: Any) -> None:
    """The steps' ids are unique, every target exists, an agent's options are action steps,
    and no loop of steps can run without waiting."""
    ids = [s.id for s in steps]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"journey {name!r}: duplicate step ids {dupes}")
    known = set(ids)
    for step in steps:
        for target in step.targets():
            if target not in known:
                raise ValueError(f"journey {name!r}: step {step.id!r} goes to unknown step "
                                 f"{target!r}")
        if step.agent:
            names = [o.id for o in step.agent.options]
            if len(set(names)) != len(names):
                raise ValueError(f"journey {name!r}: step {step.id!r}: option ids repeat")
            for option in step.agent.options:
                if option.kind not in {"send", "escalate", "crm"} or option.next:
                    raise ValueError(f"journey {name!r}: step {step.id!r}: option "
                                     f"{option.id!r} must be one send, escalate or crm "
                                     "(the journey goes on after the agent step)")
                action_check(option)
        if step.kind in {"send", "escalate", "crm"}:
            action_check(step)
        if step.branch and step.branch[-1].when is not None:
            raise ValueError(f"journey {name!r}: step {step.id!r}: the last branch arm must "
                             "have no `when` (where the others lead when none holds)")
    if holdout is not None and holdout.goto is not None and holdout.goto not in known:
        raise ValueError(f"journey {name!r}: holdout goes to unknown step {holdout.goto!r}")
    _no_instant_loop(name, steps)


def _no_instant_loop(name: str, steps: list[Step]) -> None:
    """A cycle through steps that take no time (branch, split, actions) would never stop."""
    index = {s.id: i for i, s in enumerate(steps)}

    def successors(i: int) -> list[int]:
        step = steps[i]
        if step.kind in {"wait", "wait_until", "exit"}:
            return []
        out = [index[t] for t in step.targets()]
        if not step.next and not step.branch and i + 1 < len(steps):
            out.append(i + 1)
        return out

    state = [0] * len(steps)  # 0 unseen, 1 on the path, 2 done

    def visit(i: int, path: list[str]) -> None:
        state[i] = 1
        for j in successors(i):
            if state[j] == 1:
                loop = " -> ".join([*path[path.index(steps[j].id):], steps[j].id]) \
                    if steps[j].id in path else steps[j].id
                raise ValueError(f"journey {name!r}: steps {loop} loop without a wait")
            if state[j] == 0:
                visit(j, [*path, steps[j].id])
        state[i] = 2

    for i in range(len(steps)):
        if state[i] == 0:
            visit(i, [steps[i].id])


def next_index(steps: list[Step], i: int) -> int | None:
    """Where step ``i`` goes by default: its ``next``, else the step below (None: complete)."""
    step = steps[i]
    if step.next:
        return next(j for j, s in enumerate(steps) if s.id == step.next)
    return i + 1 if i + 1 < len(steps) else None


def sends(steps: list[Step]) -> list[SendStep]:
    """Every message the steps may send (an agent step's options included)."""
    out = []
    for step in steps:
        for s in [step, *(step.agent.options if step.agent else [])]:
            if s.send is not None:
                out.append(s.send)
    return out


AgentChoice.model_rebuild()
