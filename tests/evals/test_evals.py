"""The eval machinery: suites validate with line numbers, the runner scores real runs, the
gate fails a broken agent and names the violated cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.brains.llm import make_client
from agent.knowledge import KnowledgeBase
from agent.understand import IntentClassifier
from evals.broken import without_policy
from evals.cli import diff_reports, gate, thresholds_for
from evals.html import html_report
from evals.judge import Judge
from evals.personas import LLMVoice
from evals.replay import export_conversations, replay, to_case
from evals.report import build_report, markdown
from evals.runner import SUITES_DIR, EvalEnv, SuiteError, load_suite, load_suites, run_case
from evals.schema import Case
from evals.scorers import score_case
from journey.turns import InboundRequest
from memory.embeddings import MiniLMEmbedder
from tests import fakes


@pytest.fixture(scope="module")
def env(embedder: MiniLMEmbedder, classifier: IntentClassifier,
        knowledge: KnowledgeBase) -> EvalEnv:
    return EvalEnv(embedder, classifier, knowledge)


def test_shipped_suites_are_valid_and_cover_the_scenarios() -> None:
    suites = load_suites([SUITES_DIR])
    cases = [c for s in suites for c in s.cases]
    assert len(cases) >= 40
    tags = {t for s in suites for c in s.cases for t in [*c.tags, *s.tags]}
    for scenario in ("pricing", "cart-abandonment", "opt-out", "quiet-hours", "frequency-cap",
                     "repeat", "human-request", "buying-signal", "churn", "promoter",
                     "cross-channel", "injection", "privacy"):
        assert scenario in tags, scenario


def test_suite_errors_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ncases:\n  - id: one\n    fixtures:\n      customers: [{key: a}]\n"
        "    turns:\n      - say: hi\n        channel: fax\n        expect: {handoff: Legal!}\n"
    )
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    lines = {(p.line, p.message.split(":")[0]) for p in caught.value.problems}
    assert (8, "cases.0.turns.0.channel") in lines
    assert (9, "cases.0.turns.0.expect.handoff") in lines


def _run(env: EvalEnv, ids: set[str], **kw: Any) -> dict[str, Any]:
    suites = load_suites([SUITES_DIR])
    picked = [(s, c) for s in suites for c in s.cases if c.id in ids]
    runs = [[run_case(c, env, suite=s.name, **kw)] for s, c in picked]
    scores = [[score_case(r) for r in rs] for rs in runs]
    return build_report(runs, scores, brain="rules", suites=[s.name for s in suites])


CASES = {"nothing-after-opt-out", "sms-stop-confirmed-once", "revoked-channel-stays-silent",
         "enterprise-buying-signal", "complaint-with-goodwill-credit-approved"}


def test_the_real_agent_passes_and_a_broken_one_fails_the_gate(env: EvalEnv) -> None:
    good = _run(env, CASES)
    assert good["totals"] == {**good["totals"], "cases": 5, "passed": 5, "policy_violations": 0}
    assert gate(good, thresholds_for("rules")) == []

    broken = _run(env, CASES, container_hook=without_policy)
    failed = {c["id"]: c for c in broken["cases"] if not c["passed"]}
    assert {"sms-stop-confirmed-once", "nothing-after-opt-out",
            "revoked-channel-stays-silent"} <= set(failed)
    for case in ("sms-stop-confirmed-once", "revoked-channel-stays-silent"):
        assert any("sent on sms after the customer opted out" in v
                   for v in failed[case]["violations"]), failed[case]
    assert broken["totals"]["policy_violations"] > 0
    missed = gate(broken, thresholds_for("rules"))
    assert any(m.startswith("policy violations") for m in missed)
    assert any(m.startswith("pass rate") for m in missed)
    report = markdown(broken)
    assert "## Failed cases" in report and "**nothing-after-opt-out**" in report


def test_cli_runs_a_tag_writes_reports_and_gates(tmp_path: Path) -> None:
    journey = Path(sys.executable).parent / "journey"
    env = {**os.environ, "COLUMNS": "160"}
    out = subprocess.run(
        [str(journey), "eval", "run", "--tag", "opt-out", "--report", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "eval gate passed" in out.stdout
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["totals"]["cases"] == data["totals"]["passed"] >= 4
    assert data["cases"][0]["transcript"][0]["actions"]
    strict = subprocess.run(
        [str(journey), "eval", "run", "--case", "sms-stop-confirmed-once", "--fail-under", "1",
         "--repeat", "2"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert strict.returncode == 0, strict.stdout + strict.stderr
    missing = subprocess.run([str(journey), "eval", "run", str(tmp_path / "nope.yaml")],
                             capture_output=True, text=True, env=env, timeout=120, check=False)
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr


def test_compare_names_regressions(env: EvalEnv, tmp_path: Path) -> None:
    good = _run(env, {"sms-stop-confirmed-once", "revoked-channel-stays-silent"})
    broken = _run(env, {"sms-stop-confirmed-once", "revoked-channel-stays-silent"},
                  container_hook=without_policy)
    (tmp_path / "a.json").write_text(json.dumps(good, default=str))
    (tmp_path / "b.json").write_text(json.dumps(broken, default=str))
    diff = diff_reports(good, broken)
    assert set(diff["regressed"]) == {"sms-stop-confirmed-once", "revoked-channel-stays-silent"}
    assert diff["metrics"]["policy_violations"][0] == 0
    assert diff["metrics"]["policy_violations"][1] > 0
    assert diff_reports(broken, good)["fixed"] == [c["id"] for c in good["cases"]]
    journey = Path(sys.executable).parent / "journey"
    out = subprocess.run([str(journey), "eval", "compare", str(tmp_path / "a.json"),
                          str(tmp_path / "b.json")], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "160"}, timeout=120, check=False)
    assert out.returncode == 1 and "regressed  sms-stop-confirmed-once" in out.stdout


def test_html_report_is_self_contained_with_charts(env: EvalEnv) -> None:
    report = _run(env, {"enterprise-buying-signal", "sms-stop-confirmed-once"})
    page = html_report(report)
    assert page.count("<svg") >= 2 and "<script" not in page and "http" not in page
    assert "Intent confusion" in page and "enterprise-buying-signal" in page


def test_stored_conversations_export_and_replay(
    env: EvalEnv, make_container: Any
) -> None:
    c = make_container()
    for text in ("what does the Growth plan include?", "STOP"):
        c.orchestrator.handle_message(InboundRequest.model_validate(
            {"channel": "sms", "customer": {"phone": "+15550009999"}, "text": text}
        ))
    records = export_conversations(c.store)
    [record] = records
    assert [t["text"] for t in record["turns"]] == ["what does the Growth plan include?", "STOP"]
    assert record["turns"][1]["decision"]["actions"][0]["reason_codes"] == [
        "opt_out_confirmation"
    ]
    case = to_case(record)
    assert score_case(run_case(case, env)).passed

    [same] = replay(records, env)
    assert same["changed"] == [] and same["error"] is None
    [broken] = replay(records, env, container_hook=without_policy)
    [stop] = [ch for ch in broken["changed"] if ch["turn"] == "STOP"]
    assert stop["actions"] == {"was": [("send_message", "modify")],
                               "now": [("send_message", "allow")]}


def test_an_llm_persona_talks_until_its_goal(env: EvalEnv) -> None:
    """The persona model is scripted at the HTTP boundary; everything else is real."""
    model = fakes.ScriptedModel(
        fakes.content("how much is Growth per month?"),
        fakes.content("DONE"),
    )
    voice = LLMVoice(make_client("http://persona.test/v1", "", 5.0, http_client=model.client()),
                     "persona-model")
    case = Case.model_validate({
        "id": "llm-persona",
        "fixtures": {"customers": [{"key": "zoe", "email": "zoe@x.example"}]},
        "persona": {"kind": "llm", "opening": "hi there", "goal": "learn Growth's price",
                    "hidden_facts": {"seats": 12}, "max_turns": 5},
        "final": {"persona_end": "goal"},
    })
    run = run_case(case, env, voice=voice)
    assert score_case(run).passed, score_case(run).failures
    assert [t.text for t in run.turns] == ["hi there", "how much is Growth per month?"]
    first, second = model.requests
    assert "learn Growth's price" in first["messages"][0]["content"]
    assert "seats: 12" in first["messages"][0]["content"]
    # the persona sees itself as the assistant role and the bot as the user
    assert [m["role"] for m in second["messages"][1:]] == ["assistant", "user"] * 2
    assert "$399" in second["messages"][-1]["content"]


def test_the_llm_judge_grades_rubric_lines_on_the_transcript(env: EvalEnv) -> None:
    model = fakes.ScriptedModel(
        fakes.content({"pass": True, "why": "the price is stated"}),
        fakes.content("no idea"),
    )
    judge = Judge(make_client("http://judge.test/v1", "", 5.0, http_client=model.client()),
                  "judge-model")
    case = Case.model_validate({
        "id": "judged",
        "fixtures": {"customers": [{"key": "zoe", "email": "zoe@x.example"}]},
        "turns": [{"say": "how much is Growth per month?"}],
        "final": {"rubric": ["states the monthly price", "offers a demo"]},
    })
    checks = judge.grade(run_case(case, env))
    assert [(c.name, c.passed) for c in checks] == [
        ("judge: states the monthly price", True), ("judge: offers a demo", False)
    ]
    assert "unreadable judgement" in checks[1].detail
    prompt = model.requests[0]["messages"][1]["content"]
    assert "Rubric: states the monthly price" in prompt and "$399" in prompt
