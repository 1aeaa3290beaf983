"""Journeys with steps end to end: events posted to the real HTTP API, the workers as `journey
serve` runs them, the real SMTP adapter delivering to a real local SMTP server, a restart in
the middle (a new container, server and worker on the same database), and the metrics the
API reports at the end checked against what each customer went through."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.clock import FixedClock
from core.domain import Identity
from journey.customers import ProfileRequest
from journey.experiments import in_holdout
from journey.runtime import Container
from tests.conftest import ContainerFactory
from tests.journey.test_journeys import Inbox, _ev, _events, smtp  # noqa: F401 (a fixture)
from tests.server import client, drain, one_worker, running_server, turn

GUIDE = """
signals:
  - {event: page_view, where: {page: pricing}, scores: {purchase: 0.15}}
templates:
  guide_nurture: >-
    Hi {first_name}, thanks for downloading our guide. Chapter 2 has the three-step rollout.
  static_nurture: >-
    Hi {first_name}, here is the guide's summary, as we send to everyone who downloads it.
journeys:
  - name: guide_followup
    description: After a guide download, a day's wait; a buying signal goes to sales, the
      rest get the nurture email; the goal is a checkout within 14 days.
    intent: research
    trigger: {event: content_download}
    cooldown: 1d
    goal: {event: checkout_completed, within: 14d}
    holdout: {share: 0.5, goto: static_wait}
    exits: {events: [unsubscribed]}
    steps:
      - id: settle
        wait: 1d
      - id: buying_signal
        branch:
          - when: {scores: {purchase: {gte: 0.3}}}
            goto: alert_sales
          - goto: nurture
      - id: alert_sales
        escalate: {queue: sales, priority: high, reason: "buying signal after the guide"}
        next: await_goal
      - id: nurture
        send: {channel: email, template: guide_nurture, subject: "Your guide, chapter 2"}
      - id: await_goal
        wait_until: {event: checkout_completed, timeout: 13d, on_event: converted,
                     on_timeout: timed_out}
      - id: converted
        exit: converted
      - id: timed_out
        exit: no_checkout
      - id: static_wait
        wait: 1d
      - id: static_nurture
        send: {channel: email, template: static_nurture, subject: "The guide's summary"}
"""


def _people(container: Container, n: int) -> list[str]:
    ids = []
    for i in range(n):
        profile = container.store.create_customer(
            [Identity(kind="email", value=f"p{i}@example.com")], "consideration",
            name=f"Pat{i} Doe", timezone="America/New_York",
            consent={"email": {"service": "granted", "marketing": "granted"}})
        ids.append(profile.id)
    return ids


def _who(i: int) -> dict[str, str]:
    return {"email": f"p{i}@example.com"}


def restart_ids() -> Any:
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_r{next(counter):04d}"


def test_wait_branch_send_and_goal_with_a_holdout_across_a_restart(
    make_container: ContainerFactory, clock: FixedClock, smtp: tuple[Inbox, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    inbox, port = smtp
    path = tmp_path / "journeys.yaml"
    path.write_text(GUIDE)
    first = make_container(smtp_host="127.0.0.1", smtp_port=port, journeys_path=path)
    people = _people(first, 12)
    control = {c for c in people if in_holdout("guide_followup", c, 0.5, "")}
    # both arms are present, and some treated customers neither buy nor show a signal
    # (SHA-256 of the ids decides: the same every run)
    treated = [c for c in people if c not in control]
    assert len(treated) >= 4 and control
    # two treated customers show a buying signal; one of them and one control customer buy
    keen = treated[:2]
    buyer, control_buyer = treated[2], sorted(control)[0]
    index = {c: i for i, c in enumerate(people)}
    start = clock.now()
    with running_server(first) as base, client(base) as http:
        fired = _events(http, *[_ev(f"dl{i}", "content_download", start, _who(i),
                                    asset="guide") for i in range(12)])
        assert [r["fired"] for r in fired["results"]] == [["guide_followup"]] * 12
        _events(http, *[_ev(f"pv{c}{n}", "page_view", start + timedelta(minutes=n), _who(
            index[c]), page="pricing") for c in keen for n in range(2)])
        drain(one_worker(first))
        # everyone is enrolled and waiting; nothing has gone out yet
        body = http.get("/v1/journeys/guide_followup/metrics").json()
        assert body["entered"] == 12 and body["waiting"] == 12
        assert body["by_arm"] == {"treatment": len(treated), "holdout": len(control)}
        assert inbox.messages == []

    # the restart: a new container, server and worker on the same database
    clock.advance(days=1, minutes=5)
    second = make_container(smtp_host="127.0.0.1", smtp_port=port, journeys_path=path,
                            ids=restart_ids())
    worker = one_worker(second, "after")
    with running_server(second) as base, client(base) as http:
        drain(worker)
        sent = {m["To"]: m for m in inbox.messages}
        # the control got the static email, the treated without a signal the nurture, the
        # keen ones nothing by email: sales has them
        for c in people:
            address = f"p{index[c]}@example.com"
            if c in control:
                assert sent[address]["Subject"] == "The guide's summary"
            elif c in keen:
                assert address not in sent
            else:
                assert sent[address]["Subject"] == "Your guide, chapter 2"
                assert "Chapter 2 has the three-step rollout" in sent[address].get_payload(
                    decode=True).decode()
        handoffs = [h for c in keen for h in second.store.handoffs(c)]
        assert sorted(h.customer_id for h in handoffs) == sorted(keen)
        assert {(h.queue, h.priority) for h in handoffs} == {("sales", "high")}

        clock.advance(days=2)
        _events(http, _ev("buy1", "checkout_completed", clock.now(), _who(index[buyer])),
                _ev("buy2", "checkout_completed", clock.now(), _who(index[control_buyer])))
        drain(worker)
        clock.advance(days=12)
        drain(worker)
        metrics = http.get("/v1/journeys/guide_followup/metrics").json()
        customer = http.get(f"/v1/customers/{buyer}").json()

    assert metrics["entered"] == 12 and metrics["active"] == 0 and metrics["waiting"] == 0
    assert metrics["conversions"] == 2
    # the buyer left on the goal (its remaining steps did not run), the keen ones when a
    # person took them over; the control finished its static email and still counted its
    # checkout
    assert metrics["exited"] == {"exit:no_checkout": len(treated) - 3, "goal": 1,
                                 "handoff": 2, "completed": len(control)}
    steps = {s["id"]: s for s in metrics["steps"]}
    assert steps["settle"]["reached"] == len(treated)
    assert steps["buying_signal"]["paths"] == {"alert_sales": 2, "nurture": len(treated) - 2}
    assert steps["alert_sales"]["outcomes"] == {"escalated": 2}
    assert steps["nurture"]["outcomes"] == {"sent": len(treated) - 2}
    assert steps["static_nurture"]["outcomes"] == {"sent": len(control)}
    # the exits happen where each customer was: all of them while waiting for the goal
    assert steps["await_goal"]["outcomes"] == {"timeout": len(treated) - 3, "exited": 3}
    assert steps["await_goal"]["reached"] == len(treated)
    assert metrics["messages_sent"] == len(treated) - 2 + len(control)
    (treatment,) = metrics["holdout"]["arms"]
    holdout = metrics["holdout"]["holdout"]
    assert (treatment["customers"], treatment["conversions"]) == (len(treated), 1)
    assert (holdout["customers"], holdout["conversions"]) == (len(control), 1)
    assert treatment["lift_significant"] is False
    assert metrics["time_to_convert_hours"]["median"] == pytest.approx(72 + 5 / 60, abs=0.01)
    assert [f["customers"] for f in metrics["funnel"]][:2] == [12, len(treated)]
    # every action was a proactive decision through the policy gate, with its step
    decisions = [d for d in second.store.decisions(customer_id=buyer)]
    (nurture,) = decisions
    assert "journey:guide_followup" in nurture.reasons
    assert "journey_step:nurture" in nurture.reasons
    assert customer["profile"]["id"] == buyer


TWO_STEPS = """
templates:
  greet: "{text}"
journeys:
  - name: greet
    trigger: {event: signed_up}
    cooldown: 1m
    goal: {event: checkout_completed, within: 7d}
    exits: {events: [unsubscribed]}
    steps:
      - {id: pause, wait: {wait}}
      - {id: hello, send: {channel: email, template: greet, subject: Hello}}
"""


def _greet(text: str, wait: str = "1d", extra: str = "") -> str:
    return TWO_STEPS.replace('"{text}"', f'"{text}"').replace("{wait}", wait) + extra


def test_a_customer_mid_journey_stays_on_the_version_they_entered(
    make_container: ContainerFactory, clock: FixedClock, smtp: tuple[Inbox, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    inbox, port = smtp
    path = tmp_path / "journeys.yaml"
    path.write_text(_greet("Version one, after a day."))
    container = make_container(smtp_host="127.0.0.1", smtp_port=port, journeys_path=path)
    _people(container, 2)
    worker = one_worker(container)
    with running_server(container) as base, client(base) as http:
        _events(http, _ev("s0", "signed_up", clock.now(), _who(0)))
        drain(worker)
        # the file changes: another text and a longer wait
        path.write_text(_greet("Version two, after two days.", wait="2d"))
        assert container.journeys is not None
        container.journeys.reload()
        _events(http, _ev("s1", "signed_up", clock.now(), _who(1)))
        drain(worker)
        clock.advance(days=1, minutes=1)
        drain(worker)
        assert [(m["To"], m.get_payload(decode=True).decode().split("\r\n")[0])
                for m in inbox.messages] == [("p0@example.com", "Version one, after a day.")]
        clock.advance(days=1)
        drain(worker)
        metrics = http.get("/v1/journeys/greet/metrics").json()
    assert [m.get_payload(decode=True).decode().split("\r\n")[0] for m in inbox.messages] == [
        "Version one, after a day.", "Version two, after two days."]
    assert len(metrics["versions"]) == 2
    assert metrics["exited"] == {"completed": 2}


def test_exits_end_an_enrolment_before_anything_more_is_sent(
    make_container: ContainerFactory, clock: FixedClock, smtp: tuple[Inbox, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    """An exit event ends the enrolment at once (its wait is woken); an opt-out ends it at its
    next step; a journey that ``cancels`` the tag replaces it; the goal ends it when reached."""
    inbox, port = smtp
    path = tmp_path / "journeys.yaml"
    path.write_text(_greet("Hello", extra="""    tag: greeting
  - name: takeover
    trigger: {event: demo_booked}
    cancels: [greeting]
    actions:
      crm: {task: "Prepare the demo"}
"""))
    container = make_container(smtp_host="127.0.0.1", smtp_port=port, journeys_path=path)
    people = _people(container, 5)
    worker = one_worker(container)
    with running_server(container) as base, client(base) as http:
        _events(http, *[_ev(f"s{i}", "signed_up", clock.now(), _who(i)) for i in range(5)])
        drain(worker)
        clock.advance(minutes=10)
        _events(http, _ev("u0", "unsubscribed", clock.now(), _who(0)),
                _ev("d1", "demo_booked", clock.now(), _who(1)),
                _ev("k2", "checkout_completed", clock.now(), _who(2)))
        opted = http.put("/v1/customers", json={
            "identities": {"email": "p3@example.com"},
            "consent": {"email": {"marketing": {"status": "revoked", "source": "test"}}}})
        assert opted.status_code == 200, opted.text
        drain(worker)  # no time passed: the exit event and the goal wake their enrolments
        early = {e.customer_id: e.exit_reason
                 for e in container.store.enrolments.for_journey("greet")}
        clock.advance(days=1, minutes=1)
        drain(worker)
        metrics = http.get("/v1/journeys/greet/metrics").json()
    assert early == {people[0]: "event:unsubscribed", people[1]: "replaced:takeover",
                     people[2]: "goal", people[3]: None, people[4]: None}
    reasons = {e.customer_id: e.exit_reason
               for e in container.store.enrolments.for_journey("greet")}
    assert reasons == {**early, people[3]: "opt_out", people[4]: "completed"}
    assert [m["To"] for m in inbox.messages] == ["p4@example.com"]
    assert metrics["exited"] == {"event:unsubscribed": 1, "replaced:takeover": 1, "goal": 1,
                                 "opt_out": 1, "completed": 1}
    assert metrics["conversions"] == 1 and metrics["messages_sent"] == 1


SPLIT = """
templates:
  long: "The long version."
  short: "Short."
journeys:
  - name: ab
    trigger: {event: signed_up}
    goal: {event: checkout_completed, within: 7d}
    exits: {opt_out: false}
    steps:
      - id: which
        split:
          allocation: fixed
          variants: [{name: long_text, goto: send_long}, {name: short_text, goto: send_short}]
      - {id: send_long, send: {channel: email, template: long, subject: A}, next: gap}
      - {id: send_short, send: {channel: email, template: short, subject: B}, next: gap}
      - {id: gap, wait: 1d}
      - id: follow_up
        agent:
          options:
            - {id: offer, send: {channel: email, template: short, subject: Offer}}
            - {id: note, crm: {task: "Follow up by phone"}}
"""


def test_a_split_sends_each_customer_their_variant_and_the_agent_takes_the_first_allowed_option(
    make_container: ContainerFactory, clock: FixedClock, smtp: tuple[Inbox, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    inbox, port = smtp
    path = tmp_path / "journeys.yaml"
    path.write_text(SPLIT)
    container = make_container(smtp_host="127.0.0.1", smtp_port=port, journeys_path=path)
    assert container.stepper is not None
    container.stepper.rng = np.random.default_rng(7)
    people = _people(container, 10)
    # one customer withdrew marketing email: the agent's first option (an offer by email) is
    # refused by the policy for them, so it writes the CRM task instead
    container.customers.upsert(ProfileRequest.model_validate({
        "identities": {"email": "p9@example.com"},
        "consent": {"email": {"marketing": {"status": "revoked"}}}}), by="test")
    worker = one_worker(container)
    with running_server(container) as base, client(base) as http:
        _events(http, *[_ev(f"s{i}", "signed_up", clock.now(), _who(i)) for i in range(10)])
        drain(worker)
        # the same day, a second marketing email would be capped: the agent step waits a day
        clock.advance(days=1, minutes=1)
        drain(worker)
        metrics = http.get("/v1/journeys/ab/metrics").json()
    drawn = {e.customer_id: e.variants["which"]
             for e in container.store.enrolments.for_journey("ab")}
    subjects: dict[str, list[str]] = {}
    for m in inbox.messages:
        subjects.setdefault(m["To"], []).append(m["Subject"])
    for i, c in enumerate(people[:9]):
        first = {"long_text": "A", "short_text": "B"}[drawn[c]]
        assert subjects[f"p{i}@example.com"] == [first, "Offer"]
    assert "p9@example.com" not in subjects
    counts = {a["name"]: a["customers"] for a in metrics["variants"]["which"]["arms"]}
    assert counts == {v: list(drawn.values()).count(v) for v in ("long_text", "short_text")}
    assert 0 < counts["long_text"] < 10
    steps = {s["id"]: s for s in metrics["steps"]}
    assert steps["follow_up"]["paths"] == {"offer": 9, "note": 1}
    assert steps["follow_up"]["outcomes"] == {"sent": 9, "crm": 1}
    # the customer without marketing consent was refused their variant's email too
    variant_steps = {"long_text": "send_long", "short_text": "send_short"}
    for variant, step in variant_steps.items():
        mine = [c for c in people if drawn[c] == variant]
        assert steps[step]["outcomes"] == {
            k: n for k, n in {"sent": len(set(mine) - {people[9]}),
                              "suppressed": int(people[9] in mine)}.items() if n}
    # its variant's email and the offer were refused for want of consent, nothing capped
    assert metrics["suppressed_by"] == {"consent_revoked": 1, "offer:consent_revoked": 1}
    assert metrics["exited"] == {"completed": 10}
    (task,) = [a for a in container.store.crm_activities(people[9]) if a["kind"] == "task"]
    assert task["body"]["text"] == "Follow up by phone"


STAGE_ENTRY = """
signals:
  - {event: page_view, where: {page: pricing}, scores: {purchase: 0.15}}
templates:
  hello: "Hi {first_name}, glad you are looking at plans."
journeys:
  - name: deciding
    trigger: {event: stage_changed, where: {to: decision}, profile: {tier: {ne: partner}}}
    steps:
      - {id: hello, send: {channel: email, template: hello, subject: Plans}}
"""


def test_a_stage_change_or_a_trait_condition_can_be_the_entry(
    make_container: ContainerFactory, clock: FixedClock, smtp: tuple[Inbox, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Three pricing views move a customer to `decision` (the lifecycle rules): that move is
    a `stage_changed` event that enrols them, unless their `tier` trait excludes them."""
    inbox, port = smtp
    path = tmp_path / "journeys.yaml"
    path.write_text(STAGE_ENTRY)
    container = make_container(smtp_host="127.0.0.1", smtp_port=port, journeys_path=path)
    people = _people(container, 2)
    worker = one_worker(container)
    with running_server(container) as base, client(base) as http:
        _events(http, _ev("t1", "account_updated", clock.now(), _who(1)) | {
            "traits": {"tier": "partner"}})
        results = _events(http, *[
            _ev(f"pv{i}{n}", "page_view", clock.now() + timedelta(seconds=n), _who(i),
                page="pricing") for i in (0, 1) for n in range(3)])["results"]
        assert [r["stage"] for r in results] == [None, None, "decision"] * 2
        clock.advance(minutes=1)  # the views were stamped a few seconds ahead
        drain(worker)
        events = http.get(f"/v1/customers/{people[0]}").json()["events"]
    assert [e["properties"]["to"] for e in events if e["type"] == "stage_changed"] == [
        "decision"]
    (enrolment,) = container.store.enrolments.for_journey("deciding")
    assert enrolment.customer_id == people[0] and enrolment.exit_reason == "completed"
    assert [m["To"] for m in inbox.messages] == ["p0@example.com"]


ADAPTIVE = """
templates:
  a: "Version A."
  b: "Version B."
journeys:
  - name: learn
    trigger: {event: signed_up}
    goal: {event: checkout_completed, within: 7d}
    steps:
      - id: pick
        split:
          allocation: adaptive
          min_share: 0.1
          variants: [{name: a, goto: send_a}, {name: b, goto: send_b}]
      - {id: send_a, send: {channel: email, template: a, subject: A}, next: done}
      - {id: send_b, send: {channel: email, template: b, subject: B}}
      - {id: done, exit: sent}
"""


def test_an_adaptive_split_learns_from_the_goal_and_keeps_exploring(
    make_container: ContainerFactory, clock: FixedClock, tmp_path: Path,
) -> None:
    """Customers who get variant `a` buy, those who get `b` do not: after a few batches the
    split (Thompson sampling on the goal, seeded) sends most newcomers to `a`, and still some
    to `b` (its minimum share)."""
    path = tmp_path / "journeys.yaml"
    path.write_text(ADAPTIVE)
    container = make_container(journeys_path=path)
    assert container.stepper is not None
    container.stepper.rng = np.random.default_rng(5)
    _people(container, 80)
    worker = one_worker(container)
    drawn: list[str] = []
    with running_server(container) as base, client(base) as http:
        for batch in range(8):
            who = range(batch * 10, batch * 10 + 10)
            _events(http, *[_ev(f"s{i}", "signed_up", clock.now(), _who(i)) for i in who])
            drain(worker)
            variants = {e.customer_id: e.variants["pick"]
                        for e in container.store.enrolments.for_journey("learn")}
            mine = [variants[f"cus_{i + 1:04d}"] for i in who]
            drawn += mine
            _events(http, *[_ev(f"k{i}", "checkout_completed", clock.now(), _who(i))
                            for i, v in zip(who, mine, strict=True) if v == "a"])
            drain(worker)
            clock.advance(days=2)  # the marketing cap is per day
        metrics = http.get("/v1/journeys/learn/metrics").json()
    late = drawn[40:]
    assert late.count("a") >= 30 and "b" in drawn  # learnt, and explored
    arms = {a["name"]: a for a in metrics["variants"]["pick"]["arms"]}
    assert arms["a"]["customers"] == drawn.count("a") == arms["a"]["conversions"]
    assert arms["b"]["conversions"] == 0
    assert metrics["variants"]["pick"]["winner"] == ("a" if min(
        drawn.count("a"), drawn.count("b")) >= 30 else None)


def test_a_stage_a_conversation_moves_enrols_the_customer_too(
    make_container: ContainerFactory, clock: FixedClock, tmp_path: Path,
) -> None:
    """A buying signal in a web chat moves the customer to `decision` (the turn's rule): the
    journey entering on that stage enrols them, as when signals move it. (By default a journey
    would wait: the same message opened a sales handoff, and a person owns the conversation.)"""
    path = tmp_path / "journeys.yaml"
    path.write_text("""
journeys:
  - name: deciding
    trigger: {event: stage_changed, where: {to: decision}}
    # the 500 seats also went to sales: this journey runs beside the person
    stale_when: {handoff_open: false}
    exits: {handoff_open: false}
    steps:
      - {id: prepare, crm: {task: "Prepare the quote call"}}
""")
    container = make_container(journeys_path=path)
    worker = one_worker(container)
    with running_server(container) as base:
        answered = turn(base, "We're 500 seats and need SSO and a quote", "wc_buyer")
        assert answered["decision"]["stage"] == "decision"
        clock.advance(minutes=1)
        drain(worker)
    (enrolment,) = container.store.enrolments.for_journey("deciding")
    assert enrolment.customer_id == answered["customer_id"]
    assert enrolment.exit_reason == "completed"
    tasks = [a for a in container.store.crm_activities(answered["customer_id"])
             if a["kind"] == "task"]
    assert "Prepare the quote call" in [t["body"]["text"] for t in tasks]
