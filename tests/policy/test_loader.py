"""Policy as data: validation errors name the line, the server reloads without a restart,
`journey policy check` and `journey policy explain` work as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from policy.lint import lint
from policy.loader import PolicyError, PolicyProvider, default_policy_path, load_policy
from prompts import load_yaml

BAD = """\
name: broken
contact:
  caps:
    - {name: daily, max: 2}
  quiet_hours:
    start: "25:00"
escalation:
  rules:
    - name: lawyers
      when: {}
      queue: legal
      reason: r
content: {max_credit: 50}
surprise: 1
"""


def test_the_default_policy_is_valid_and_lint_clean() -> None:
    policy = load_policy()
    intents = list(load_yaml("intents.yaml")["intents"])
    stages = ["awareness", "consideration", "decision", "retention", "advocacy"]
    assert lint(policy, intents, stages) == []
    assert policy.name == "acme-default" and len(policy.version) == 12


def test_errors_name_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BAD)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    problems = [(p.line, p.message.split(":")[0]) for p in caught.value.problems]
    assert problems == [
        (4, "contact.caps.0"),
        (6, "contact.quiet_hours.start"),
        (10, "escalation.rules.0.when"),
        (14, "surprise"),
    ]
    assert "line 4: contact.caps.0" in str(caught.value)
    assert "give exactly one of 'window' or 'per: day'" in str(caught.value)


def test_queues_must_be_declared(tmp_path: Path) -> None:
    """An escalation or routing rule naming a queue the inbox does not have is refused."""
    path = tmp_path / "policy.yaml"
    path.write_text(
        "escalation:\n  rules:\n    - {name: lawyers, when: {terms_any: [lawyer]}, queue: legal,"
        " reason: r}\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "escalation rule 'lawyers' names queue 'legal', which is not in handoff.queues " \
           "(sales, support)" in str(caught.value)
    path.write_text(
        "handoff:\n  queues: {sales: {}, support: {}, vip: {claim_within: 5m}}\n  routing:\n"
        "    - {name: big, when: {min_value: 1000}, queue: vip}\n"
        "    - {name: bad, when: {stages: [decision]}, queue: legal}\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "routing rule 'bad' names queue 'legal'" in str(caught.value)
    path.write_text("handoff:\n  queues: {sales: {}}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "must include sales and support" in str(caught.value)


def test_yaml_syntax_errors_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("contact:\n  caps: [\n    {name: a\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    [problem] = caught.value.problems
    assert problem.line is not None and problem.message.startswith("not valid YAML")


def test_a_saved_change_is_picked_up_and_an_invalid_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(default_policy_path().read_text())
    ticks = [0.0]
    provider = PolicyProvider(path, clock=lambda: ticks[0])
    assert provider.get().content.max_credit == 50

    path.write_text(path.read_text().replace("max_credit: 50", "max_credit: 25"))
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))  # a distinct mtime even on coarse clocks
    assert provider.get().content.max_credit == 50  # not checked again before 0.5 s
    ticks[0] = 1.0
    assert provider.get().content.max_credit == 25
    good_version = provider.get().version

    path.write_text(BAD)
    os.utime(path, ns=(1, 3_000_000_000_000_000_000))
    ticks[0] = 2.0
    assert provider.get().version == good_version  # the last valid policy stays in force
    assert provider.last_error is not None and provider.last_error.problems[0].line == 4


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    journey = Path(sys.executable).parent / "journey"
    env = {**os.environ, "COLUMNS": "160", "JOURNEY_POLICY_PATH": ""}
    return subprocess.run([str(journey), *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_cli_check_and_explain(tmp_path: Path) -> None:
    ok = run_cli("policy", "check", str(default_policy_path()))
    assert ok.returncode == 0, ok.stderr
    assert "is valid (4 caps, 9 escalation rules" in ok.stdout
    assert "warning" not in ok.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    failed = run_cli("policy", "check", str(bad))
    assert failed.returncode == 1
    assert "line 6: contact.quiet_hours.start" in failed.stderr

    warned = tmp_path / "warn.yaml"
    warned.write_text(
        "contact: {switch_channels: true}\n"
        "escalation:\n  rules:\n    - {name: x, when: {intents: [refund_please]}, "
        "queue: support, reason: r}\ncontent:\n  templates: {default: 'We guarantee it'}\n"
        "  forbidden: [{name: guarantee, pattern: guarantee}]\n"
    )
    out = run_cli("policy", "check", str(warned))
    assert out.returncode == 0
    assert "unknown intents ['refund_please']" in out.stdout
    assert "content.templates.default breaks its own content rule" in out.stdout

    explained = run_cli("policy", "explain")
    assert explained.returncode == 0, explained.stderr
    for expected in ("marketing_daily", "21:00", "legal_terms", "issue_credit",
                     "explicit: the customer granted it"):
        assert expected in explained.stdout
    assert "--file" in run_cli("policy", "explain", "--help").stdout


def test_an_empty_or_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("")
    with pytest.raises(PolicyError, match="missing sections: contact, escalation, content"):
        load_policy(path)
    path.write_text(default_policy_path().read_text().split("escalation:")[0])
    with pytest.raises(PolicyError, match="missing sections: escalation, content"):
        load_policy(path)


def test_a_deleted_file_is_reported_and_the_policy_stays(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(default_policy_path().read_text())
    ticks = [0.0]
    provider = PolicyProvider(path, clock=lambda: ticks[0])
    version = provider.get().version
    path.unlink()
    ticks[0] = 1.0
    assert provider.get().version == version
    assert provider.last_error is not None
    assert "cannot read the file" in str(provider.last_error)
    with pytest.raises(PolicyError):
        provider.reload()
    path.write_text(default_policy_path().read_text().replace("max_credit: 50", "max_credit: 5"))
    ticks[0] = 2.0
    assert provider.get().content.max_credit == 5 and provider.last_error is None
