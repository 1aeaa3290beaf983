"""Real conversations as evals: export them from the store (JSONL, or suite cases), and replay
them against the current agent to see where its decisions changed.

    export_conversations(store)     → one JSON-ready record per conversation
    to_case(record)                 → a suite case whose expectations are the recorded decisions
    replay(records, env)            → per conversation, the turns whose decision changed
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from evals.runner import CaseRun, EvalEnv, run_case
from evals.schema import Case
from memory.store import Store


def export_conversations(
    store: Store, *, customer_id: str | None = None, conversation_ids: list[str] | None = None
) -> list[dict[str, Any]]:
    """Stored conversations with their customer and every inbound turn's recorded decision."""
    customers = (
        [p for p in [store.get_customer(customer_id)] if p] if customer_id
        else store.list_customers(limit=10_000)
    )
    records = []
    for profile in customers:
        for conversation in store.list_conversations(profile.id):
            if conversation_ids and conversation.id not in conversation_ids:
                continue
            decisions = {d.inbound_message_id: d for d in
                         store.decisions(conversation_id=conversation.id, limit=10_000)}
            turns: list[dict[str, Any]] = []
            consent_at_start: dict[str, Any] | None = None
            for m in store.messages(conversation_id=conversation.id):
                if m.direction != "inbound":
                    continue
                d = decisions.get(m.id)
                if d is not None and consent_at_start is None:
                    # the engine recorded the consent it saw before the first turn
                    consent_at_start = d.inputs.get("consent")
                turns.append({
                    "channel": m.channel, "text": m.text, "at": m.created_at.isoformat(),
                    "decision": None if d is None else {
                        "intent": d.intent, "stage": d.stage, "previous_stage": d.previous_stage,
                        "reply": d.reply,
                        "actions": [
                            {"tool": v.tool, "outcome": v.outcome, "executed": v.executed,
                             "reason_codes": v.reason_codes}
                            for v in d.verdicts
                        ],
                    },
                })
            if not turns:
                continue
            identities = {i.kind: i.value for i in profile.identities}
            first: dict[str, Any] | None = next(
                (t["decision"] for t in turns if t["decision"]), None
            )
            records.append({
                "conversation_id": conversation.id,
                "customer": {
                    "name": profile.name, "email": identities.get("email"),
                    "phone": identities.get("phone"),
                    "web_chat_id": identities.get("web_chat_id"),
                    "stage": first["previous_stage"] if first else profile.lifecycle_stage,
                    "timezone": profile.timezone or "UTC",
                    "attributes": profile.attributes,
                    "consent": consent_at_start if consent_at_start is not None else {
                        k: v.model_dump() for k, v in profile.consent.items()
                    },
                },
                "turns": turns,
            })
    return records


def _handoff(decision: dict[str, Any]) -> str:
    escalated = [a for a in decision["actions"]
                 if a["tool"] == "escalate_to_human" and a["executed"]]
    return "yes" if escalated else "none"


def to_case(record: dict[str, Any], case_id: str | None = None) -> Case:
    """A suite case from a stored conversation; its expectations are the recorded decisions
    (intent, stage, handoff or not), so a changed agent shows up as a failed check."""
    customer = {k: v for k, v in record["customer"].items() if v not in (None, {}, "")}
    turns = []
    previous_at: str | None = None
    for t in record["turns"]:
        at = datetime.fromisoformat(t["at"])
        after = at - datetime.fromisoformat(previous_at) if previous_at else timedelta(minutes=1)
        previous_at = t["at"]
        expect: dict[str, Any] = {}
        if t["decision"]:
            expect = {"intent": t["decision"]["intent"], "stage": t["decision"]["stage"]}
            if _handoff(t["decision"]) == "none":
                expect["handoff"] = "none"
        turns.append({"say": t["text"], "channel": t["channel"],
                      "after": f"{max(1, int(after.total_seconds() // 60))}m", "expect": expect})
    first_at = datetime.fromisoformat(record["turns"][0]["at"])
    return Case.model_validate({
        "id": case_id or ("replay-" + record["conversation_id"].lower().replace("_", "-")),
        "description": f"Replayed from conversation {record['conversation_id']}",
        "tags": ["replay"],
        "fixtures": {"customers": [{"key": "customer", **customer}],
                     "clock": first_at - timedelta(minutes=1)},
        "turns": turns,
    })


def changes(record: dict[str, Any], run: CaseRun) -> list[dict[str, Any]]:
    """Per turn, what the current agent decided differently from the recorded decision."""
    out = []
    for t, now in zip(record["turns"], run.turns, strict=False):
        was = t["decision"]
        if was is None or now.result is None:
            continue
        d = now.result.decision
        diff: dict[str, Any] = {}
        for key, new in (("intent", d.intent), ("stage", d.stage), ("reply", d.reply)):
            if was[key] != new:
                diff[key] = {"was": was[key], "now": new}
        old_actions = sorted((a["tool"], a["outcome"]) for a in was["actions"])
        new_actions = sorted((v.tool, v.outcome) for v in d.verdicts)
        if old_actions != new_actions:
            diff["actions"] = {"was": old_actions, "now": new_actions}
        if diff:
            out.append({"turn": t["text"], **diff})
    return out


def replay(records: list[dict[str, Any]], env: EvalEnv, **kw: Any) -> list[dict[str, Any]]:
    results = []
    for record in records:
        run = run_case(to_case(record), env, suite="replay", **kw)
        results.append({
            "conversation_id": record["conversation_id"],
            "turns": len(record["turns"]),
            "error": run.error,
            "changed": changes(record, run),
        })
    return results
