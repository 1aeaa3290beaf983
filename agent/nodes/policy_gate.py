"""policy_gate: the policy engine's verdict on every candidate, before anything runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from langgraph.runtime import Runtime

from agent.context import TurnServices
from agent.knowledge import ANSWER_SCORE, RETRIEVED_K
from agent.language import DEFAULT_LANGUAGE, languages
from agent.nodes.turn import ACTIONS, sent_ledger, state_maybe_inbound, state_profile
from agent.state import TurnState
from agent.understand import Signals
from core.domain import (
    CustomerProfile,
    Handoff,
)
from core.identity import default_region
from core.ports import MemoryHit
from policy.engine import Facts, PolicyEngine
from policy.escalation import MessageFacts
from policy.grounding import Grounding, conversation_sources

#: Earlier inbound messages this recent that resemble this one make it a repeat contact.
REPEAT_WINDOW = timedelta(days=14)


def policy_gate(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """The policy engine gives every candidate a verdict with reason codes; nothing has run."""
    svc = runtime.context
    policy = svc.policy.get()
    now = svc.clock.now()
    inbound = state_maybe_inbound(state)
    profile = state_profile(state)
    signals = Signals.model_validate(state["signals"])
    esc = policy.escalation
    # the similar messages in the memory, or the contacts the customer says this is
    repeat = max(signals.claimed_contacts, 1 + sum(
        1 for h in (MemoryHit.model_validate(x) for x in state["history"])
        if h.direction == "inbound" and h.score >= esc.repeat_similarity
        and h.created_at >= now - REPEAT_WINDOW
    ))
    message = MessageFacts(
        text=inbound.text if inbound else "",
        intent=signals.intent,
        confidence=signals.confidence,
        sentiment=signals.sentiment,
        # the intent examples are English: in another language the topic is no fact
        topic=signals.best_other_than("human_request", "small_talk", "off_topic", "opt_out")
        if signals.language == DEFAULT_LANGUAGE else None,
        seats=signals.seats,
        requirements=tuple(signals.requirements),
        repeat_contacts=repeat,
        stalled_turns=svc.store.stalled_turns(state["conversation_id"]),
        stage=profile.lifecycle_stage,
        opt_out=state["opt_out"],
        opt_in=state["opt_in"],
    )
    handoff = state["active_handoff"]
    ledger = sent_ledger(svc, profile.id, policy, now)
    result = PolicyEngine(policy).arbitrate(
        ACTIONS.validate_python(state["proposed"]),
        Facts(
            profile=profile,
            message=message,
            inbound_channel=inbound.channel if inbound else None,
            now=now,
            stages=svc.lifecycle.stages,
            active_handoff=Handoff.model_validate(handoff) if handoff else None,
            ledger=ledger,
            summary=state.get("summary", ""),
            # a journey's declared actions are the company's, not the model's
            origin="model" if inbound else "system",
            human_said=tuple((state.get("handback") or {}).get("replies", ())),
            rule_stage=state["rule_stage"],
            customer_said=_customer_said(state),
            grounding=_grounding(state, svc, profile) if inbound else None,
        ),
    )
    return {
        "proposed": [a.model_dump(mode="json") for a in result.actions],
        "verdicts": [v.model_dump(mode="json") for v in result.verdicts],
        "approved": {str(i): a.model_dump(mode="json") for i, a in result.approved.items()},
        "held": {str(i): a.model_dump(mode="json") for i, a in result.held.items()},
        "consent_changes": result.consent_changes,
        "policy_inputs": result.inputs,
        "policy_version": policy.version,
    }


def _customer_said(state: TurnState) -> tuple[str, ...]:
    """The customer's own words: this message and the recent ones (quotes are not claims)."""
    inbound = state.get("inbound")
    earlier = [m["text"] for m in state.get("recent", []) if m.get("direction") == "inbound"]
    return tuple(earlier + ([inbound["text"]] if inbound else []))


def _grounding(state: TurnState, svc: TurnServices, profile: CustomerProfile) -> Grounding | None:
    """The sources every claim of the bot's reply must be in. The company's: the knowledge
    the brains were given (the whole base when it is small, else the entries retrieved for
    the message; those are recorded with their scores either way), the profile, what the
    bot and people told the customer before. The customer's: what they wrote. Proactive
    turns send the journey's own templates, and are not checked."""
    kb = svc.knowledge
    inbound = state_maybe_inbound(state)
    if kb is None or inbound is None:
        return None
    resolved = (state.get("signals") or {}).get("resolved")
    retrieved = kb.search(resolved or inbound.text, k=RETRIEVED_K)
    company = [m["text"] for m in state.get("recent", []) if m.get("direction") == "outbound"]
    company += [h["text"] for h in state.get("history", []) if h.get("direction") == "outbound"]
    back = state.get("handback") or {}
    company += [*back.get("replies", ()), *back.get("notes", ())]
    customer = list(_customer_said(state))
    seats = (state.get("signals") or {}).get("seats")
    if seats:  # read off the customer's words ("two hundred seats", "1.5k users")
        customer.append(f"{seats} seats")
    customer += [h["text"] for h in state.get("history", []) if h.get("direction") == "inbound"]
    best = retrieved[0] if retrieved else None
    fallback = best[0].answer if best and best[1] >= ANSWER_SCORE else None
    written_in = languages().get((state.get("signals") or {}).get("language") or DEFAULT_LANGUAGE)
    if written_in is not None and written_in.unsure:
        # the knowledge base is English: a customer who wrote in Spanish is told, in Spanish,
        # that this cannot be confirmed, and offered a person
        fallback = written_in.unsure
    region = default_region()
    return Grounding(
        sources=conversation_sources(
            profile, company_said=company, customer_said=customer, region=region,
            known=(kb.company, *(e.answer for e in kb.given(retrieved)))),
        fallback=fallback,
        region=region,
        knowledge=tuple((e.id, round(score, 3)) for e, score in retrieved),
    )
