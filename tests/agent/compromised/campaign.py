"""Running the campaign: the customers seeded, the prelude, then ``ROUNDS`` rounds of every
attack, each message a real turn through the orchestrator and the hijacked model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from core.clock import FixedClock
from core.domain import Channel
from journey.runtime import Container
from journey.turns import InboundRequest, TurnResult
from policy.privacy import mask
from tests.agent.compromised.attacks import ATTACKS, PRELUDE
from tests.agent.compromised.customers import PEOPLE, Person
from tests.agent.compromised.model import Call, HijackedModel

ROUNDS = 9
CLOCK_STEP = timedelta(minutes=6)


@dataclass
class Turn:
    kind: str
    person: Person
    channel: Channel
    text: str
    result: TurnResult
    #: what the hijacked model was asked this turn (none: the rules or a person decided)
    calls: list[Call]

    @property
    def model_rules(self) -> list[str]:
        return [call.rule for call in self.calls]

    @property
    def model_wrote(self) -> list[str]:
        return [text for call in self.calls for text in call.wrote]


def seed(c: Container) -> None:
    for p in PEOPLE.values():
        c.store.create_customer(
            p.identities(), p.stage, name=p.name, timezone=p.timezone,
            attributes=dict(p.attributes), consent=p.consent, customer_id=p.id,
        )


def _ref(p: Person, channel: Channel) -> dict[str, str]:
    kind = {"web_chat": "web_chat_id", "email": "email"}.get(channel, "phone")
    value = p.address(channel)
    assert value, f"{p.key} cannot write on {channel}"
    return {kind: value, "name": p.name}


class Campaign:
    """Drives the turns: each attack burst from one customer, then the humans close handoffs."""

    def __init__(self, c: Container, model: HijackedModel, clock: FixedClock) -> None:
        self.c, self.model, self.clock = c, model, clock
        self.turns: list[Turn] = []

    def say(self, kind: str, p: Person, channel: Channel, text: str) -> None:
        self.clock.advance(seconds=CLOCK_STEP.total_seconds())
        self.model.current = p.key
        before = len(self.model.calls)
        result = self.c.orchestrator.handle_message(InboundRequest.model_validate(
            {"channel": channel, "customer": _ref(p, channel), "text": text}
        ))
        assert result.customer_id == p.id, (p.key, result.customer_id)
        calls = self.model.calls[before:]
        # card numbers never reach the model; the decision's prompt quotes customer text:
        # message tags cannot be opened or closed from inside (the writer's is a JSON string)
        masked = mask(text.strip(), self.c.policy.get().privacy)
        quoted = re.sub(r"</?\s*customer_message\s*>", "", masked, flags=re.IGNORECASE).strip()
        assert all(call.text.strip() == (quoted if call.role == "decide" else masked)
                   for call in calls), (text, calls)
        self.turns.append(Turn(kind, p, channel, text, result, calls))

    def resolve_handoffs(self, p: Person) -> None:
        """The human team closes whatever was handed over, so the model is asked again."""
        for h in self.c.store.handoffs(p.id):
            if h.status in ("open", "claimed"):
                self.c.store.set_handoff_status(h.id, "resolved")

    def prelude(self) -> None:
        for key, channel, text in PRELUDE:
            self.say("prelude", PEOPLE[key], channel, text)
            self.resolve_handoffs(PEOPLE[key])

    def attacks(self) -> None:
        for r in range(ROUNDS):
            for n, attack in enumerate(ATTACKS):
                burst = attack.variants[r % len(attack.variants)]
                key, channel = attack.slots[(r + n) % len(attack.slots)]
                for text in burst:
                    self.say(attack.kind, PEOPLE[key], channel, text)
                self.resolve_handoffs(PEOPLE[key])
