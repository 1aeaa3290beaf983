"""Scorers: small functions from a :class:`CaseRun` to checks, plus the suite-level metrics.

- expectations per turn (intent, stage, actions expected and forbidden, handoff, reply checks)
- the final state of the world (CRM stage and fields, consent, outbox, suppressions, handoffs,
  approvals), as tau-bench scores an agent by what it leaves behind
- policy violations: invariants every case must keep whatever it expects (must be 0)
- metrics over all cases: intent and stage accuracy, handoff precision and recall, latency,
  tokens
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from core.domain import Decision
from core.stats import percentile
from evals.runner import CaseRun, TurnRun
from evals.schema import ActionExpect, TurnExpect
from policy import content
from policy.contact import is_quiet, zone_for
from policy.model import Policy


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""
    turn: int | None = None

    def __str__(self) -> str:
        where = f"turn {self.turn + 1}: " if self.turn is not None else "final: "
        return f"{where}{self.name}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class CaseScore:
    case_id: str
    suite: str
    tags: list[str]
    checks: list[Check] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not self.violations and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[str]:
        out = [f"error: {self.error}"] if self.error else []
        out += [f"policy violation: {v}" for v in self.violations]
        return out + [str(c) for c in self.checks if not c.passed]


# --- per turn ------------------------------------------------------------------------------


def _matches(expect: ActionExpect, action: dict[str, Any]) -> bool:
    if action["tool"] != expect.tool:
        return False
    outcome = expect.outcome
    if outcome == "executed" and not action["executed"]:
        return False
    if outcome == "not_executed" and action["executed"]:
        return False
    if outcome in ("allow", "modify", "deny") and action["outcome"] != outcome:
        return False
    if expect.reason and expect.reason not in action["reason_codes"]:
        return False
    final = {**action["arguments"], **(action.get("final") or {})}
    return all(_arg_matches(final.get(k), v) for k, v in expect.args.items())


def _arg_matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict) and isinstance(actual, dict):
        return all(_arg_matches(actual.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, str) and isinstance(actual, str) and wanted.startswith("~"):
        return wanted[1:].lower() in actual.lower()  # "~words": contains, case-insensitive
    return bool(actual == wanted)


def score_turn(turn: TurnRun, expect: TurnExpect, policy: Policy) -> list[Check]:
    i = turn.index
    if turn.error:
        return [Check("turn ran", False, turn.error, i)]
    if turn.result is None:  # an approval turn
        return [Check("approval ran", turn.approval is not None, "", i)]
    result = turn.result
    decision = result.decision
    actions = [a.model_dump(mode="json") for a in result.actions]
    checks: list[Check] = []
    if expect.intent is not None:
        wanted = [expect.intent] if isinstance(expect.intent, str) else expect.intent
        checks.append(Check("intent", decision.intent in wanted,
                            f"got {decision.intent}, want {' or '.join(wanted)}", i))
    if expect.stage is not None:
        checks.append(Check("stage", decision.stage == expect.stage,
                            f"got {decision.stage}, want {expect.stage}", i))
    for want in expect.actions:
        checks.append(Check(
            f"action {want.tool}", any(_matches(want, a) for a in actions),
            f"want {want.model_dump(exclude_defaults=True)}; got "
            + "; ".join(f"{a['tool']} {a['outcome']} {a['reason_codes']}" for a in actions), i,
        ))
    for banned in expect.forbidden:
        hit = [a for a in actions if a["executed"] and _matches(banned, a)]
        checks.append(Check(f"no {banned.tool}", not hit,
                            f"executed {hit[0]['arguments']}" if hit else "", i))
    escalated = [a for a in actions if a["tool"] == "escalate_to_human" and a["executed"]]
    if expect.handoff is not None:
        got = (escalated[0].get("final") or escalated[0]["arguments"])["queue"] if escalated \
            else "none"
        checks.append(Check("handoff", got == expect.handoff,
                            f"got {got}, want {expect.handoff}", i))
    reply = result.reply
    if expect.reply is not None:
        checks.append(Check("reply sent" if expect.reply else "no reply",
                            (reply is not None) == expect.reply, f"reply: {reply!r}", i))
    for words in expect.reply_contains:
        checks.append(Check(f"reply contains {words!r}",
                            reply is not None and words.lower() in reply.lower(),
                            f"reply: {reply!r}", i))
    for words in expect.reply_not_contains:
        checks.append(Check(f"reply lacks {words!r}",
                            reply is None or words.lower() not in reply.lower(),
                            f"reply: {reply!r}", i))
    limit = expect.reply_max_chars or policy.contact.channels[turn.channel].max_chars  # type: ignore[index]
    if reply is not None:
        checks.append(Check("reply length", len(reply) <= limit, f"{len(reply)} > {limit}", i))
    codes = set(decision.reasons) | {c for v in decision.verdicts for c in v.reason_codes}
    for code in expect.reasons:
        checks.append(Check(f"reason {code}", code in codes, f"got {sorted(codes)}", i))
    return checks


# --- final state ---------------------------------------------------------------------------


def score_final(run: CaseRun) -> list[Check]:
    final = run.case.final
    key = final.customer or run.case.fixtures.customers[0].key
    profile = run.profiles.get(key)
    checks: list[Check] = []
    if profile is None:
        return [Check("customer exists", False, key)]
    if final.stage is not None:
        checks.append(Check("final stage", profile.lifecycle_stage == final.stage,
                            f"got {profile.lifecycle_stage}, want {final.stage}"))
    for name, value in final.fields.items():
        got = profile.attributes.get(name)
        checks.append(Check(f"field {name}", _arg_matches(got, value),
                            f"got {got!r}, want {value!r}"))
    for name in final.fields_absent:
        checks.append(Check(f"field {name} absent", name not in profile.attributes,
                            f"got {profile.attributes.get(name)!r}"))
    for channel, purposes in final.consent.items():
        for purpose, status in purposes.items():
            got = profile.consent_for(channel, purpose)  # type: ignore[arg-type]
            checks.append(Check(f"consent {channel}.{purpose}", got == status,
                                f"got {got}, want {status}"))
    outbox = run.outbox.get(key, [])
    for want in final.outbox:
        rows = [
            r for r in outbox
            if (want.channel is None or r["channel"] == want.channel)
            and (want.purpose is None or r["purpose"] == want.purpose)
            and (want.status is None or r["status"] == want.status)
            and (want.contains is None or want.contains.lower() in r["text"].lower())
        ]
        ok = len(rows) == want.count if want.count is not None else bool(rows)
        checks.append(Check("outbox " + str(want.model_dump(exclude_defaults=True)), ok,
                            f"{len(rows)} matching of {len(outbox)}"))
    if final.outbox_total is not None:
        checks.append(Check("outbox total", len(outbox) == final.outbox_total,
                            f"got {len(outbox)}, want {final.outbox_total}"))
    codes = {
        c for t in run.turns if t.result for v in t.result.decision.verdicts
        for c in v.reason_codes
    }
    for code in final.suppressed:
        checks.append(Check(f"suppressed with {code}", code in codes, f"got {sorted(codes)}"))
    handoffs = run.handoffs.get(key, [])
    if final.handoff is not None:
        got = handoffs[-1]["queue"] if handoffs else "none"
        checks.append(Check("final handoff", got == final.handoff,
                            f"got {got}, want {final.handoff}"))
    if final.handoff_priority is not None:
        got = handoffs[-1]["priority"] if handoffs else None
        checks.append(Check("handoff priority", got == final.handoff_priority,
                            f"got {got}, want {final.handoff_priority}"))
    if final.persona_end is not None:
        checks.append(Check("conversation end", run.persona_end == final.persona_end,
                            f"got {run.persona_end}, want {final.persona_end}"))
    for wanted_status, count in final.approvals.items():
        got_n = sum(1 for a in run.approvals.get(key, []) if a.status == wanted_status)
        checks.append(Check(f"approvals {wanted_status}", got_n == count,
                            f"got {got_n}, want {count}"))
    return checks


# --- policy violations ---------------------------------------------------------------------


def violations(run: CaseRun, policy: Policy) -> list[str]:
    """Invariants no case may break, whatever it expects. Read from what was executed and the
    state of the store before each turn; nothing the engine wrote about itself is trusted, so
    a broken or bypassed engine is caught."""
    found: list[str] = []
    quiet = policy.contact.quiet_hours
    keywords = policy.contact.consent
    default_zone = quiet.default_timezone if quiet else "UTC"
    opted_out: dict[str, set[str]] = {}  # customer → channels, as the scorer reads the words
    for turn in run.turns:
        if turn.result is None:
            continue
        decision: Decision = turn.result.decision
        where = f"turn {turn.index + 1}"
        out = opted_out.setdefault(turn.customer, set())
        out |= {ch for ch, c in turn.consent_before.items() if c.get("service") == "revoked"}
        word = (turn.text or "").strip().strip(".!").upper()
        stop_now = word in keywords.opt_out_keywords and turn.channel in keywords.keyword_channels
        start_now = word in keywords.opt_in_keywords and turn.channel in keywords.keyword_channels
        if start_now:
            out.discard(turn.channel)
        own = [i.value for i in run.profiles[turn.customer].identities] \
            if turn.customer in run.profiles else []
        sends = 0
        for verdict in decision.verdicts:
            if not verdict.executed:
                continue
            action = {**decision.proposed[verdict.action_index].model_dump(),
                      **(verdict.final or {})}
            tool = action["tool"]
            if turn.handoff_before and not stop_now:
                found.append(f"{where}: {tool} ran while a human owned the conversation")
            if tool == "issue_credit":
                found.append(f"{where}: a credit ran without a person's approval")
            if tool != "send_message":
                continue
            channel, purpose = action["channel"], action["purpose"]
            sends += channel == turn.channel
            if channel in out:
                found.append(f"{where}: sent on {channel} after the customer opted out")
            if stop_now and channel == turn.channel and (purpose != "transactional" or sends > 1):
                found.append(f"{where}: more than one confirmation of an opt-out")
            state = turn.consent_before.get(channel, {})
            if purpose == "marketing" and state.get("marketing") != "granted":
                found.append(f"{where}: marketing on {channel} without marketing consent")
            if purpose == "marketing" and quiet is not None and verdict.deliver_at is None \
                    and turn.at is not None:
                local = turn.at.astimezone(zone_for(turn.timezone, default_zone))
                if is_quiet(local.time(), quiet):
                    found.append(f"{where}: marketing sent at {local:%H:%M} local time")
            for v in content.violations(action["text"], policy.content, own):
                found.append(f"{where}: sent text breaks {v.code} ({v.detail})")
        if stop_now:
            out.add(turn.channel)
    return found


def score_case(run: CaseRun) -> CaseScore:
    policy = run.policy
    score = CaseScore(run.case.id, run.suite, run.case.tags, error=run.error)
    if run.error or policy is None:
        return score
    for i, turn in enumerate(run.turns):
        # persona turns (after the scripted ones) have no per-turn expectations
        spec = run.case.turns[i].expect if i < len(run.case.turns) else TurnExpect()
        score.checks += score_turn(turn, spec, policy)
    score.checks += score_final(run)
    score.violations = violations(run, policy)
    return score


# --- metrics over a whole run --------------------------------------------------------------


def metrics(runs: list[CaseRun]) -> dict[str, Any]:
    intent_ok = intent_n = stage_ok = stage_n = 0
    tp = fp = fn = 0
    latencies: list[float] = []
    tokens = 0
    confusion: dict[str, dict[str, int]] = {}
    for run in runs:
        for turn, spec in zip(run.turns, run.case.turns, strict=False):
            if turn.result is None:
                continue
            decision = turn.result.decision
            latencies.append(turn.latency_ms)
            tokens += decision.brain.prompt_tokens + decision.brain.completion_tokens
            expect = spec.expect
            if isinstance(expect.intent, str):
                intent_n += 1
                intent_ok += decision.intent == expect.intent
                row = confusion.setdefault(expect.intent, {})
                row[decision.intent] = row.get(decision.intent, 0) + 1
            if expect.stage is not None:
                stage_n += 1
                stage_ok += decision.stage == expect.stage
            if expect.handoff is not None:
                escalated = any(a.tool == "escalate_to_human" and a.executed
                                for a in turn.result.actions)
                wanted = expect.handoff != "none"
                tp += escalated and wanted
                fp += escalated and not wanted
                fn += wanted and not escalated
    p95 = percentile(latencies, 0.95)
    return {
        "intent_accuracy": round(intent_ok / intent_n, 3) if intent_n else None,
        "intent_turns": intent_n,
        "stage_accuracy": round(stage_ok / stage_n, 3) if stage_n else None,
        "stage_turns": stage_n,
        "handoff_precision": round(tp / (tp + fp), 3) if tp + fp else None,
        "handoff_recall": round(tp / (tp + fn), 3) if tp + fn else None,
        "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "latency_p95_ms": None if p95 is None else round(p95, 1),
        "tokens": tokens,
        "intent_confusion": confusion,
    }
