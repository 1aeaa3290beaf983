"""What the policy engine decides on and what it decides: the turn's facts, the arbitration
of its candidates, and the working state the rule checks share while one turn is judged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from core.domain import (
    Channel,
    ConsentStatus,
    CustomerProfile,
    Handoff,
    Modification,
    ProposedAction,
    Step,
    Verdict,
)
from policy import content
from policy.contact import SentRecord
from policy.escalation import Escalation, MessageFacts
from policy.grounding import Grounding


@dataclass
class Facts:
    """What the engine decides on. Built by the graph from the store and code signals."""

    profile: CustomerProfile
    message: MessageFacts
    #: The channel the customer wrote on; None for a proactive (journey) decision.
    inbound_channel: Channel | None
    now: datetime
    stages: Sequence[str]
    active_handoff: Handoff | None = None
    #: Messages already sent or scheduled for this customer (for the caps).
    ledger: Sequence[SentRecord] = ()
    #: A handoff summary for an escalation the engine adds itself.
    summary: str = ""
    #: ``model``: candidates came from the brain (it may not claim transactional purpose);
    #: ``system``: from a journey definition.
    origin: str = "model"
    #: A person approved this action (:meth:`PolicyEngine.recheck`): no approval step, no
    #: escalation rules, and an open handoff does not silence it (the person is the human).
    approved_by_person: bool = False
    #: The relay is about to deliver a message decided earlier (:mod:`policy.later`): it was
    #: already arbitrated, so no escalation rules and no approval step; it goes out as it is
    #: or not at all (no other channel, no rewrite), and only at an allowed time.
    delivery: bool = False
    #: What a person told the customer before handing the conversation back: the bot must not
    #: say it again.
    human_said: Sequence[str] = ()
    #: The stage the declared lifecycle rules give this turn (None: none fired): the only
    #: stage change a brain may make, besides the policy's ``crm.model_stage_moves``.
    rule_stage: str | None = None
    #: The customer's own messages this turn and just before: a CRM note or handoff summary
    #: may quote them without that counting as the bot's claim.
    customer_said: Sequence[str] = ()
    #: The turn's sources, which every claim of the bot's messages must be in
    #: (``policy.grounding``); None: not checked (a delivery decided earlier, a person's).
    grounding: Grounding | None = None


@dataclass
class Arbitration:
    #: Every candidate: the proposed ones, then any the engine added.
    actions: list[ProposedAction]
    verdicts: list[Verdict]
    #: Candidates that run now, as they will run (modified where the verdict says so).
    approved: dict[int, ProposedAction] = field(default_factory=dict)
    #: Candidates that wait for a person's approval.
    held: dict[int, ProposedAction] = field(default_factory=dict)
    consent_changes: dict[Channel, dict[str, ConsentStatus]] = field(default_factory=dict)
    escalation: Escalation | None = None
    stalled: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Judgement:
    """One candidate's verdict while it is being judged: outcome, reason codes, the step that
    decided, modifications, and the action as it would run (``final``)."""

    outcome: str = "allow"
    codes: list[str] = field(default_factory=list)
    detail: str = ""
    step: Step | None = None
    mods: list[Modification] = field(default_factory=list)
    final: BaseModel | None = None
    deliver_at: datetime | None = None

    def deny(self, step: Step, code: str, detail: str) -> Judgement:
        self.outcome, self.step, self.final = "deny", step, None
        self.codes.append(code)
        # what was found before the denial (a failed claim, a trimmed text) stays on record
        self.detail = f"{detail}; {self.detail}" if self.detail else detail
        return self

    def modify(self, step: Step, mod: Modification, code: str, detail: str = "") -> None:
        self.outcome = "modify"
        self.step = step
        if mod not in self.mods:
            self.mods.append(mod)
        if code not in self.codes:
            self.codes.append(code)
        if detail:
            self.detail = f"{self.detail}; {detail}" if self.detail else detail

    def withheld(self, mod: Modification, argument: str, found: list[content.Violation]) -> None:
        """A free-text argument broke the content rules and was dropped or replaced."""
        for v in found:
            self.modify("suitability", mod, v.code, f"{argument}: {v.detail}")


@dataclass
class TurnState:
    """What the candidates judged so far this turn took up (channels, the one CRM update,
    credit, escalation and approval), and the ledger the caps count with them."""

    ledger: list[SentRecord]
    escalating: bool = False
    used_channels: set[Channel] = field(default_factory=set)
    crm_done: bool = False
    credited: bool = False
    held: bool = False
    confirmed_opt_out: bool = False

