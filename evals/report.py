"""Eval reports: the JSON a machine compares, the Markdown a person reads in CI logs.

The report names every failed case with its failed checks and policy violations, and keeps the
transcript and decision trace of each case for the drill-down.
"""

from __future__ import annotations

import platform
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from evals.runner import CaseRun
from evals.scorers import CaseScore, metrics


def _trace(run: CaseRun) -> list[dict[str, Any]]:
    out = []
    for turn in run.turns:
        entry: dict[str, Any] = {"turn": turn.index + 1, "customer": turn.customer,
                                 "channel": turn.channel, "say": turn.text,
                                 "latency_ms": round(turn.latency_ms, 1)}
        if turn.error:
            entry["error"] = turn.error
        if turn.result is not None:
            d = turn.result.decision
            entry |= {
                "reply": turn.result.reply, "intent": d.intent, "stage": d.stage,
                "sentiment": d.sentiment, "brain": d.brain.name, "reasons": d.reasons,
                "actions": [
                    {"tool": a.tool, "outcome": a.outcome, "executed": a.executed,
                     "reason_codes": a.reason_codes,
                     "arguments": a.final or a.arguments}
                    for a in turn.result.actions
                ],
            }
        if turn.approval is not None:
            entry["approval"] = {"id": turn.approval.id, "status": turn.approval.status,
                                 "result": turn.approval.result}
        out.append(entry)
    return out


def build_report(
    runs: list[list[CaseRun]], scores: list[list[CaseScore]], *, brain: str, suites: list[str]
) -> dict[str, Any]:
    """``runs[i]`` and ``scores[i]`` are the K repeats of case i."""
    cases: list[dict[str, Any]] = []
    by_tag: dict[str, list[bool]] = defaultdict(list)
    violations = 0
    for repeats, scored in zip(runs, scores, strict=True):
        first = scored[0]
        passed_all = all(s.passed for s in scored)
        violations += sum(len(s.violations) for s in scored)
        for tag in first.tags:
            by_tag[tag].append(passed_all)
        cases.append({
            "id": first.case_id, "suite": first.suite, "tags": first.tags,
            "passed": passed_all,
            "repeats": len(scored), "passes": sum(s.passed for s in scored),
            "failures": [f for s in scored for f in s.failures],
            "violations": [v for s in scored for v in s.violations],
            "transcript": _trace(repeats[0]),
        })
    total = len(cases)
    passed = sum(1 for c in cases if c["passed"])
    per_repeat = [s.passed for scored in scores for s in scored]
    return {
        "brain": brain,
        "suites": suites,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "totals": {
            "cases": total,
            "passed": passed,
            "pass_rate": round(passed / total, 3) if total else 0.0,
            # pass^k: a case counts only if every one of its k repeats passed
            "repeats": len(scores[0]) if scores else 0,
            "pass_hat_k": round(passed / total, 3) if total else 0.0,
            "pass_rate_per_attempt": round(sum(per_repeat) / len(per_repeat), 3)
            if per_repeat else 0.0,
            "policy_violations": violations,
        },
        "metrics": metrics([r for repeats in runs for r in repeats]),
        "by_tag": {
            tag: {"cases": len(v), "passed": sum(v), "pass_rate": round(sum(v) / len(v), 3)}
            for tag, v in sorted(by_tag.items())
        },
        "cases": cases,
    }


def markdown(report: dict[str, Any]) -> str:
    t, m = report["totals"], report["metrics"]
    lines = [
        f"# Eval report: {report['brain']} brain",
        "",
        f"{t['passed']}/{t['cases']} cases passed (**{t['pass_rate']:.1%}**"
        + (f", pass^{t['repeats']}" if t["repeats"] > 1 else "")
        + f"); policy violations: **{t['policy_violations']}**.",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in ("intent_accuracy", "stage_accuracy", "handoff_precision", "handoff_recall",
                "latency_p50_ms", "latency_p95_ms", "tokens"):
        value = m.get(key)
        lines.append(f"| {key.replace('_', ' ')} | {'-' if value is None else value} |")
    lines += ["", "| tag | cases | passed | pass rate |", "|---|---|---|---|"]
    for tag, row in report["by_tag"].items():
        lines.append(f"| {tag} | {row['cases']} | {row['passed']} | {row['pass_rate']:.0%} |")
    failed = [c for c in report["cases"] if not c["passed"]]
    if failed:
        lines += ["", "## Failed cases", ""]
        for c in failed:
            lines.append(f"- **{c['id']}** ({c['suite']}; {', '.join(c['tags'])})")
            lines += [f"  - {f}" for f in dict.fromkeys(c["failures"])]
    return "\n".join(lines) + "\n"
