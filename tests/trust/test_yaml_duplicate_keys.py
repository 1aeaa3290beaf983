"""Issue 13, finding 9: a YAML file with a repeated key was silently accepted (the last one won).

A second top-level ``content:`` in the policy dropped every forbidden-claim rule and
`journey policy check` said the file was valid. Every YAML the product reads (policy, journeys,
lifecycle, intents, knowledge, demo data, eval suites and thresholds) now refuses a mapping
with a repeated key, naming the key and both lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evals.cli import thresholds_for
from evals.runner import SUITES_DIR, SuiteError, case_policy, load_suite, load_suites
from evals.schema import Case
from journey.demo import DEMO_FILE, seed
from policy.journeys import JourneysError, JourneysProvider, load_journeys, parse_journeys
from policy.lifecycle import LifecycleError, load_lifecycle
from policy.loader import PolicyError, PolicyProvider, default_policy_path, load_policy
from prompts import PROMPTS_DIR, load_yaml
from tests.conftest import ContainerFactory
from tests.server import client, running_server

JOURNEY = Path(sys.executable).with_name("journey")
SECOND_CONTENT = "content:\n  max_credit: 50\n"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400", "JOURNEY_POLICY_PATH": "", "JOURNEY_BRAIN": "rules",
           "ORT_DISABLE_TELEMETRY": "1"}
    return subprocess.run([str(JOURNEY), *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def line_of(text: str, start: str) -> int:
    """The 1-based number of the first line of ``text`` that starts with ``start``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def with_appended(source: Path, target: Path, extra: str) -> tuple[int, int]:
    """Copy ``source`` to ``target`` plus ``extra``; returns (lines before, first new line)."""
    text = source.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    target.write_text(text + extra, encoding="utf-8")
    before = len(text.splitlines())
    return before, before + 1


def duplicate_policy(path: Path) -> tuple[int, int]:
    """A copy of the default policy with a second top-level ``content:``: (first, second)."""
    first = line_of(default_policy_path().read_text(encoding="utf-8"), "content:")
    _, second = with_appended(default_policy_path(), path, SECOND_CONTENT)
    return first, second


def case_with_policy(policy: dict[str, object]) -> Case:
    return Case.model_validate({
        "id": "x", "turns": [{"say": "hi"}],
        "fixtures": {"customers": [{"key": "p", "email": "p@example.com"}], "policy": policy},
    })


def said(key: str, second: int, first: int) -> str:
    return f"line {second}: duplicate key '{key}' (first at line {first})"


# --- the policy ------------------------------------------------------------------------------


def test_policy_check_refuses_a_second_content_section(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    first, second = duplicate_policy(path)
    out = run_cli("policy", "check", str(path))
    assert out.returncode == 1, out.stdout
    assert said("content", second, first) in out.stderr
    assert "is valid" not in out.stdout


def test_the_policy_loader_names_every_duplicate_at_any_depth(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "contact:\n"                      # 1
        "  quiet_hours:\n"                # 2
        "    start: '21:00'\n"            # 3
        "    start: '23:00'\n"            # 4
        "escalation: {}\n"                # 5
        "content:\n"                      # 6
        "  forbidden:\n"                  # 7
        "    - {name: guarantee, pattern: guarantee, name: other}\n"  # 8
        "  max_credit: 50\n"              # 9
        "  max_credit: 500\n"             # 10
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert [str(p) for p in caught.value.problems] == [
        said("start", 4, 3), said("name", 8, 8), said("max_credit", 10, 9),
    ]


def test_the_server_refuses_a_duplicate_key_reload_and_keeps_the_forbidden_claims(
    make_container: ContainerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(default_policy_path().read_text(encoding="utf-8"), encoding="utf-8")
    c = make_container(policy_path=path)
    claims = [rule.name for rule in c.policy.get().content.forbidden]
    assert "guarantee" in claims
    with running_server(c) as base:
        http = client(base)
        shown = http.get("/v1/policy").json()

        first, second = duplicate_policy(path)
        refused = http.post("/v1/policy/reload")
        assert refused.status_code == 422, refused.text
        assert said("content", second, first) in refused.json()["detail"]

        still = http.get("/v1/policy").json()
        assert still["version"] == shown["version"]
        assert still["last_reload_error"] == [said("content", second, first)]
        assert [r["name"] for r in still["policy"]["content"]["forbidden"]] == claims
    policy = c.policy.get()
    assert policy.version == shown["version"]
    assert [rule.name for rule in policy.content.forbidden] == claims


def test_a_duplicate_saved_while_running_is_refused_by_the_hot_reload(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(default_policy_path().read_text(encoding="utf-8"), encoding="utf-8")
    now = [0.0]
    provider = PolicyProvider(path, clock=lambda: now[0])
    version = provider.get().version
    first, second = duplicate_policy(path)
    now[0] += 10
    assert provider.get().version == version
    assert provider.get().content.forbidden
    assert provider.last_error is not None
    assert [str(p) for p in provider.last_error.problems] == [said("content", second, first)]


# --- journeys, lifecycle, intents, knowledge, demo -------------------------------------------

JOURNEYS = """\
templates: {t: hello}
journeys:
  - name: a
    trigger: {event: x}
    actions: {send: {channel: email, template: t}}
"""


def test_journeys_with_a_duplicate_key_are_refused_and_the_old_version_stays(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journeys.yaml"
    path.write_text(JOURNEYS)
    provider = JourneysProvider(path)
    version = provider.get().version
    path.write_text(JOURNEYS + "    cooldown: 1d\n    cooldown: 7d\n")
    provider._checked = 0  # look now instead of in half a second
    assert provider.get().version == version
    assert provider.last_error is not None
    assert [str(p) for p in provider.last_error.problems] == [said("cooldown", 7, 6)]
    with pytest.raises(JourneysError) as caught:
        load_journeys(path)
    assert said("cooldown", 7, 6) in str(caught.value)
    with pytest.raises(JourneysError, match="line 2: duplicate key 'templates'"):
        parse_journeys("templates: {t: hello}\ntemplates: {}\n", "j.yaml")


def test_the_lifecycle_file_refuses_a_duplicate_key(tmp_path: Path) -> None:
    source = PROMPTS_DIR / "lifecycle.yaml"
    path = tmp_path / "lifecycle.yaml"
    first = line_of(source.read_text(encoding="utf-8"), "default_stage:")
    _, second = with_appended(source, path, "default_stage: decision\n")
    with pytest.raises(LifecycleError) as caught:
        load_lifecycle(path)
    assert [str(p) for p in caught.value.problems] == [said("default_stage", second, first)]


def test_intents_with_a_repeated_intent_are_refused(tmp_path: Path) -> None:
    source = PROMPTS_DIR / "intents.yaml"
    path = tmp_path / "intents.yaml"
    first = line_of(source.read_text(encoding="utf-8"), "  pricing:")
    _, second = with_appended(
        source, path, "  pricing:\n    description: cost\n    examples: ['how much']\n"
    )
    with pytest.raises(yaml.YAMLError) as caught:
        load_yaml(str(path))
    assert str(caught.value) == f"{path}: {said('pricing', second, first)}"


def test_a_knowledge_entry_with_two_answers_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "knowledge.yaml"
    first, second = with_appended(PROMPTS_DIR / "knowledge.yaml", path, "    answer: 'Yes.'\n")
    assert path.read_text().splitlines()[first - 1].startswith("    answer:")
    with pytest.raises(yaml.YAMLError) as caught:
        load_yaml(str(path))
    assert str(caught.value) == f"{path}: {said('answer', second, first)}"


def test_demo_data_with_a_duplicate_key_is_refused_before_seeding(
    make_container: ContainerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "demo.yaml"
    first = line_of(DEMO_FILE.read_text(encoding="utf-8"), "customers:")
    _, second = with_appended(DEMO_FILE, path, "customers: []\n")
    c = make_container()
    with pytest.raises(yaml.YAMLError) as caught:
        seed(c, path)
    assert str(caught.value) == f"{path}: {said('customers', second, first)}"


# --- eval suites ------------------------------------------------------------------------------

SUITE = """\
name: dup
cases:
  - id: stop
    fixtures:
      customers: [{key: p, phone: "+14155550123", consent: {sms: granted}}]
    turns:
      - say: STOP
        channel: sms
        expect: {reply: true}
        expect: {reply: false}
"""


def test_journey_eval_run_refuses_a_suite_with_a_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    out = run_cli("eval", "run", str(path))
    assert out.returncode == 2, out.stdout + out.stderr
    assert said("expect", 10, 9) in out.stderr
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    assert [str(p) for p in caught.value.problems] == [said("expect", 10, 9)]


def test_eval_thresholds_and_the_base_policy_of_a_case_refuse_duplicates(tmp_path: Path) -> None:
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("rules:\n  pass_rate: 1.0\nrules:\n  pass_rate: 0.1\n")
    with pytest.raises(yaml.YAMLError) as caught:
        thresholds_for("rules", thresholds)
    assert str(caught.value) == f"{thresholds}: {said('rules', 3, 1)}"

    policy = tmp_path / "policy.yaml"
    first, second = duplicate_policy(policy)
    case = case_with_policy({"content": {"max_credit": 10}})
    with pytest.raises(yaml.YAMLError) as caught:
        case_policy(case, policy)
    assert str(caught.value) == f"{policy}: {said('content', second, first)}"


# --- what is not a duplicate ------------------------------------------------------------------


def test_merge_keys_equal_typed_keys_and_keys_in_other_mappings() -> None:
    from prompts.yamlfile import DuplicateKeyError, parse_yaml

    merged = parse_yaml(
        "base: &b {a: 1, b: 2}\n"
        "more: &m {b: 3, c: 4}\n"
        "x:\n  <<: *b\n  a: 9\n"             # an explicit key overrides a merged one
        "y:\n  <<: [*b, *m]\n  c: 5\n"       # merged sources may overlap
        "z: {k: 1, inner: {k: 2}}\n"          # the same key in two mappings
        "w: [{k: 1}, {k: 2}]\n"
    )
    assert merged["x"] == {"a": 9, "b": 2}
    assert merged["y"] == {"a": 1, "b": 2, "c": 5}
    assert merged["z"] == {"k": 1, "inner": {"k": 2}}
    assert parse_yaml("1: a\n'1': b\n") == {1: "a", "1": "b"}  # int and str differ

    # a source with merges of its own, merged before it is built: read exactly as PyYAML does
    nested = "<<: &a {<<: {k: 1}, k: 2}\nother: *a\nlast: {<<: *a}\n"
    assert parse_yaml(nested) == yaml.safe_load(nested)

    with pytest.raises(DuplicateKeyError) as caught:
        parse_yaml("0x1: a\n1: b\n", "keys.yaml")  # both the integer 1
    assert str(caught.value) == "keys.yaml: line 2: duplicate key '1' (first at line 1)"
    with pytest.raises(DuplicateKeyError) as caught:
        parse_yaml("x:\n  <<: {a: 1}\n  a: 2\n  a: 3\n")
    assert str(caught.value).endswith(said("a", 4, 3))


# --- the shipped files ------------------------------------------------------------------------


def test_every_shipped_yaml_still_loads() -> None:
    assert load_policy().content.forbidden
    for path in sorted(PROMPTS_DIR.glob("*.yaml")):
        assert load_yaml(str(path)), path
    assert load_lifecycle().stages
    assert load_journeys().journeys
    assert len(load_suites([SUITES_DIR])) == len(list(SUITES_DIR.glob("*.yaml")))
    assert load_yaml(str(DEMO_FILE))["customers"]
    assert thresholds_for("rules")["pass_rate"] == 1.0
    case = case_with_policy({"content": {"max_credit": 1}})
    assert yaml.safe_load(case_policy(case))["content"]["max_credit"] == 1
