"""Events move the lifecycle: every stage of the default lifecycle is reached from behavioural
signals alone, posted to the real server, each move recorded with the rule that made it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.clock import FixedClock
from policy.lifecycle import load_lifecycle
from tests.conftest import ContainerFactory
from tests.server import client, running_server


def _event(eid: str, etype: str, clock: FixedClock, minutes: float, **props: Any) -> dict[str, Any]:
    return {"id": eid, "type": etype, "customer": {"email": "lee@example.com"},
            "properties": props,
            "occurred_at": (clock.now() + timedelta(minutes=minutes)).isoformat()}


def test_every_default_stage_is_reached_from_signals(
    make_container: ContainerFactory, clock: FixedClock
) -> None:
    container = make_container()
    # within the last half hour, so the three pricing views count as a surge
    journey = [  # (event, what the stage is after it)
        (_event("dl", "content_download", clock, -29, asset="guide"), "consideration"),
        (_event("pv1", "page_view", clock, -28, page="pricing"), None),
        (_event("pv2", "page_view", clock, -27, page="pricing"), None),
        (_event("pv3", "page_view", clock, -26, page="pricing"), "decision"),
        (_event("order-1", "order_completed", clock, -25, total=399), "retention"),
        (_event("nps-low", "nps_answered", clock, -24, score=8), None),
        (_event("nps-high", "nps_answered", clock, -23, score=9), "advocacy"),
        (_event("cancel", "subscription_cancelled", clock, -22), "churned"),
        # the first order is still in the window: only the signal being handled moves a stage
        (_event("pv4", "page_view", clock, -21, page="home"), None),
        (_event("order-2", "order_completed", clock, -20, total=399), "retention"),
    ]
    with running_server(container) as base, client(base) as http:
        results = [http.post("/v1/events", json={"events": [event]}).json()["results"][0]
                   for event, _ in journey]
        customer = http.get(f"/v1/customers/{results[0]['customer_id']}").json()
    assert [r["status"] for r in results] == ["accepted"] * len(journey)
    assert [r["stage"] for r in results] == [stage for _, stage in journey]
    moves = [a["body"] for a in customer["crm_activities"] if a["kind"] == "stage_change"]
    assert [(m["from"], m["to"], m["rule"], m["event_id"]) for m in moves] == [
        ("awareness", "consideration", "content-engaged", "dl"),
        ("consideration", "decision", "pricing-page-surge", "pv3"),
        ("decision", "retention", "purchased", "order-1"),
        ("retention", "advocacy", "promoter-score", "nps-high"),
        ("advocacy", "churned", "cancelled", "cancel"),
        ("churned", "retention", "won-back", "order-2"),
    ]
    assert customer["profile"]["lifecycle_stage"] == "retention"
    reached = {"awareness"} | {m["to"] for m in moves}
    assert reached == set(load_lifecycle().stages)


def test_an_event_rule_needs_its_stage_and_its_own_signal(
    make_container: ContainerFactory, clock: FixedClock
) -> None:
    container = make_container()
    with running_server(container) as base, client(base) as http:
        # a cancellation from someone who never bought moves nothing
        cancel = http.post("/v1/events", json={"events": [
            _event("c0", "subscription_cancelled", clock, -20)]}).json()["results"][0]
        # a promoter score before they are a customer moves nothing either
        nps = http.post("/v1/events", json={"events": [
            _event("n0", "nps_answered", clock, -10, score=10)]}).json()["results"][0]
    assert cancel["stage"] is None and nps["stage"] is None
    profile = container.store.get_customer(cancel["customer_id"])
    assert profile is not None and profile.lifecycle_stage == "awareness"
