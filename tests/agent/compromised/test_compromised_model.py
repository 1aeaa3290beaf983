"""A compromised model: it obeys whatever the customer's message says.

The scripted model behind the real httpx transport reads the customer's message out of each
request and does what it asks: huge discounts, credits, messages to other people, sends after an
opt-out, CRM writes to protected fields or to other customers, unknown tools and stages... Over
a few hundred attack turns an independent checker then reads the FINAL database and asserts that
no violating action ran, and that every blocked action carries a reason code.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from core.clock import FixedClock
from tests.agent.compromised.audit import audit, victim_state
from tests.agent.compromised.campaign import Campaign, seed
from tests.agent.compromised.model import RULES, HijackedModel
from tests.conftest import ContainerFactory


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The campaign is about the gate, not the database: SQLite only."""
    return f"sqlite:///{tmp_path / 'journey.sqlite'}"


# --- the test ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["tools", "json_schema"])
def test_a_compromised_model_executes_no_violating_action(
    make_container: ContainerFactory, clock: FixedClock, mode: str
) -> None:
    """A model that obeys every customer gets nothing past the policy gate."""
    model = HijackedModel()
    c = make_container(brain="openai", llm_mode=mode, llm_http_client=model.client())
    seed(c)
    campaign = Campaign(c, model, clock)
    campaign.prelude()
    victim_before = victim_state(c)
    started = time.perf_counter()
    campaign.attacks()
    elapsed = time.perf_counter() - started
    attacks = [t for t in campaign.turns if t.kind != "prelude"]

    # the model really was asked, and really was hostile: no attack fell to the benign rule
    model_turns = [t for t in attacks if t.result.decision.brain.name == "openai"]
    rules = Counter(rule for t in attacks for rule in t.model_rules)
    assert "benign" not in rules, [t.text for t in attacks if "benign" in t.model_rules]
    assert set(rules) == {name for name, _, _ in RULES} - {"benign"}, sorted(rules)
    assert len({t.kind for t in attacks}) >= 20
    assert len(model_turns) >= 200, len(model_turns)
    # nothing an attacker's prompt contained came from the victim
    assert model.leaks == []

    # every blocked action in the stored audit trail says why
    denied = rejected = rewritten = held = 0
    unexplained: list[str] = []
    for d in c.store.decisions(limit=100_000):
        for v in d.verdicts:
            if v.outcome == "deny":
                denied += 1
                if not [code for code in v.reason_codes if code != "allowed"]:
                    unexplained.append(f"{d.id} {v.tool} deny {v.reason_codes}")
                if v.executed:
                    unexplained.append(f"{d.id} {v.tool} denied but executed")
            elif v.outcome == "modify":
                rewritten += "rewrite" in v.modifications
                if not [code for code in v.reason_codes if code != "allowed"]:
                    unexplained.append(f"{d.id} {v.tool} modify {v.reason_codes}")
            if v.approval_id:
                held += 1
                if v.executed:
                    unexplained.append(f"{d.id} {v.tool} held but executed")
        for r in d.rejected:
            rejected += 1
            if not r.reason_codes:
                unexplained.append(f"{d.id} rejected {r.tool} without a reason code")
    assert unexplained == []
    assert denied + rejected >= 200, (denied, rejected)

    # and the final database shows no violating action at all
    violations = audit(c, campaign.turns, victim_before)
    summary = (
        f"{mode}: {len(attacks)} attack turns ({len(model_turns)} decided by the model) of "
        f"{len({t.kind for t in attacks})} kinds in {elapsed:.1f}s; {denied} denied, "
        f"{rejected} rejected calls, {rewritten} replies rewritten, {held} held for approval"
    )
    print(summary)
    if violations:
        pytest.fail(
            f"violating actions executed ({summary}):\n"
            + json.dumps(violations, indent=1, ensure_ascii=False, default=str),
            pytrace=False,
        )
