"""The journeys file's steps are validated when it loads: each mistake is named with its line,
and a file with one mistake is refused as a whole (the version in force stays)."""

from __future__ import annotations

import pytest

from policy.journeys import JourneysError, load_journeys, parse_journeys

HEAD = """templates: {hello: "Hi {first_name}"}
journeys:
  - name: j
    trigger: {event: content_download}
"""


def _errors(steps: str, extra: str = "") -> str:
    with pytest.raises(JourneysError) as info:
        parse_journeys(HEAD + extra + "    steps:\n" + steps, "j.yaml")
    return str(info.value)


def test_a_valid_journey_with_every_kind_of_step_loads() -> None:
    journeys = parse_journeys(HEAD + """    goal: {event: checkout_completed, within: 7d}
    holdout: {share: 0.1, goto: static}
    exits: {events: [unsubscribed], stage_in: [retention]}
    reentry: never
    steps:
      - {id: first, wait: 1d}
      - id: until
        wait_until: {event: page_view, where: {page: pricing}, timeout: 2d, on_timeout: pick}
      - id: fork
        branch:
          - {when: {scores: {purchase: {gte: 0.5}}, stage_in: [decision]}, goto: sales}
          - {when: {events: {event: page_view, count: 3, within: 7d}}, goto: pick}
          - {goto: ab}
      - id: ab
        split:
          allocation: adaptive
          min_share: 0.1
          variants: [{name: by_email, goto: mail}, {name: by_sms, goto: text}]
      - {id: mail, send: {channel: email, template: hello}, next: done}
      - {id: text, send: {channel: sms, template: hello}, next: done}
      - {id: sales, escalate: {queue: sales, reason: ready to buy}, next: done}
      - id: pick
        agent:
          options:
            - {id: by_text, send: {channel: sms, template: hello}}
            - {id: by_note, crm: {task: call them}}
        next: done
      - {id: done, exit: finished}
      - {id: static, send: {channel: email, template: hello}}
""", "j.yaml")
    (j,) = journeys.journeys
    assert j.multi_step and [s.kind for s in j.steps] == [
        "wait", "wait_until", "branch", "split", "send", "send", "escalate", "agent", "exit",
        "send"]
    assert j.goal is not None and j.goal.within.days == 7
    # the version changes with the journey or the text it sends, not with another journey
    v1 = j.fingerprint(journeys.templates)
    assert j.fingerprint({"hello": "Hello {first_name}"}) != v1
    assert j.fingerprint({**journeys.templates, "other": "x"}) == v1


def test_the_shipped_journeys_still_load_unchanged() -> None:
    journeys = load_journeys()
    one_step = [j for j in journeys.journeys if not j.multi_step]
    assert {j.name for j in one_step} >= {"whitepaper_nurture", "pricing_surge"}
    assert all(j.actions is not None for j in one_step)


@pytest.mark.parametrize(("steps", "extra", "expected"), [
    ("      - {id: a, wait: 1d, next: nowhere}\n", "",
     "step 'a' goes to unknown step 'nowhere'"),
    ("      - {id: a, wait: 1d}\n      - {id: a, exit: x}\n", "", "duplicate step ids ['a']"),
    ("      - {id: a, wait: 1d, exit: x}\n", "", "exactly one of"),
    ("      - {id: a}\n", "", "exactly one of"),
    ("      - {id: a, send: {channel: email, template: nope}}\n", "",
     "step 'a': unknown template 'nope'"),
    ("      - id: a\n        branch: [{when: {stage_in: [decision]}, goto: a}]\n", "",
     "the last branch arm must have no `when`"),
    ("      - id: a\n        branch: [{goto: b}]\n      - id: b\n        branch: [{goto: a}]\n",
     "", "steps a -> b -> a loop without a wait"),
    ("      - {id: a, agent: {options: [{id: b, wait: 1d}]}}\n", "",
     "option 'b' must be one send, escalate or crm"),
    ("      - {id: a, agent: {options: [{id: b, send: {channel: email, template: nope}}]}}\n",
     "", "step 'b': unknown template 'nope'"),
    ("      - {id: a, wait: 1d}\n", "    holdout: {share: 0.1, goto: gone}\n",
     "holdout goes to unknown step 'gone'"),
    ("      - {id: a, wait: 1d}\n", "    holdout: {share: 0.9}\n", "less than or equal to 0.5"),
    ("      - {id: a, wait: 1d}\n", "    actions: {crm: {task: t}}\n",
     "both `actions` and `steps`"),
    ("      - id: s\n        split: {variants: [{name: only, goto: s}]}\n", "",
     "at least 2 items"),
])
def test_mistakes_in_steps_are_named(steps: str, extra: str, expected: str) -> None:
    assert expected in _errors(steps, extra)


def test_each_mistake_names_its_line() -> None:
    text = _errors("      - {id: a, wait: 1d}\n      - {id: b, wait: soon}\n"
                   "      - {id: c, send: {channel: fax, template: hello}}\n")
    assert "line 7:" in text and "steps.1.wait" in text
    assert "line 8:" in text and "steps.2.send.channel" in text


def test_a_goal_or_holdout_needs_steps() -> None:
    with pytest.raises(JourneysError, match="`goal` needs `steps`"):
        parse_journeys(HEAD + "    goal: {event: x}\n    actions: {crm: {task: t}}\n", "j.yaml")
