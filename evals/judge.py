"""An optional LLM-as-judge: each rubric line of a case is judged pass/fail on the transcript
by any OpenAI-compatible model. Off unless a judge is configured; never used in the CI gate,
whose scorers are deterministic."""

from __future__ import annotations

import json
from typing import Any

from evals.runner import CaseRun
from evals.scorers import Check

PROMPT = (
    "You grade a customer-service conversation against one rubric line. Answer with a JSON "
    'object {"pass": true|false, "why": "<one sentence>"} and nothing else.'
)


def transcript_text(run: CaseRun) -> str:
    lines = []
    for turn in run.turns:
        if turn.text is not None:
            lines.append(f"customer ({turn.channel}): {turn.text}")
        if turn.result is not None:
            lines.append(f"bot: {turn.result.reply or '(no reply)'}")
            for a in turn.result.actions:
                if a.executed and a.tool != "send_message":
                    lines.append(f"  [action] {a.tool} {json.dumps(a.final or a.arguments)}")
    return "\n".join(lines)


class Judge:
    def __init__(self, client: Any, model: str) -> None:
        self.client = client
        self.model = model

    def grade(self, run: CaseRun) -> list[Check]:
        checks = []
        conversation = transcript_text(run)
        for rubric in run.case.final.rubric:
            response = self.client.chat.completions.create(
                model=self.model, temperature=0, max_tokens=200,
                response_format={"type": "json_object"},
                messages=[{"role": "system", "content": PROMPT},
                          {"role": "user",
                           "content": f"Rubric: {rubric}\n\nConversation:\n{conversation}"}],
            )
            raw = response.choices[0].message.content or ""
            try:
                verdict = json.loads(raw)
                passed, why = bool(verdict["pass"]), str(verdict.get("why", ""))
            except (json.JSONDecodeError, KeyError, TypeError):
                passed, why = False, f"unreadable judgement: {raw[:120]!r}"
            checks.append(Check(f"judge: {rubric}", passed, why))
        return checks
