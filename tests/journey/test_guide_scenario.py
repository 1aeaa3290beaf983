"""The seed scenario at scale, with the shipped journeys: a population downloads the buyer's
guide and some then view the pricing page. The orchestrated arm sends the keen ones to sales
and no nurture; the control gets the static nurture whatever it did; the metrics show the two
arms side by side, and their counts are what each simulated customer went through."""

from __future__ import annotations

from core.clock import FixedClock
from journey.demo.guide import JOURNEY, Scenario, simulate
from tests.conftest import ContainerFactory
from tests.server import client, running_server


def test_the_orchestrated_arm_alerts_sales_where_the_static_control_sends_the_nurture(
    make_container: ContainerFactory, clock: FixedClock,
) -> None:
    container = make_container()
    outcome = simulate(container, clock, Scenario(customers=150, days=3, seed=11))
    store = container.store
    arm = {e.customer_id: e.arm for e in store.enrolments.for_journey(JOURNEY)}
    assert len(arm) == 150
    holdout = {c for c, a in arm.items() if a == "holdout"}
    assert 0 < len(holdout) < 75 and outcome.signal - holdout and outcome.signal & holdout
    for cid in outcome.customers:
        emails = [r for r in store.outbox(customer_id=cid) if r["channel"] == "email"]
        handoffs = store.handoffs(cid)
        if cid in holdout:  # the static schedule: the nurture, signal or not; no sales alert
            assert outcome.got[cid] == "static" and len(emails) == 1 and not handoffs
        elif cid in outcome.signal:  # orchestrated: sales has them, the nurture never went
            assert outcome.got[cid] == "sales" and emails == []
            (handoff,) = handoffs
            assert (handoff.queue, handoff.priority) == ("sales", "high")
            assert "pricing" in handoff.summary
        else:
            assert outcome.got[cid] == "nurture" and len(emails) == 1 and not handoffs
    with running_server(container) as base, client(base) as http:
        metrics = http.get(f"/v1/journeys/{JOURNEY}/metrics").json()
    (treatment,) = metrics["holdout"]["arms"]
    control = metrics["holdout"]["holdout"]
    treated = set(arm) - holdout
    assert (treatment["customers"], control["customers"]) == (len(treated), len(holdout))
    assert treatment["conversions"] == len(outcome.converted & treated)
    assert control["conversions"] == len(outcome.converted & holdout)
    assert metrics["conversions"] == len(outcome.converted)
    # the lift is called significant exactly when its interval leaves zero (and each arm has
    # at least 30 customers)
    low, high = treatment["lift_interval"]["low"], treatment["lift_interval"]["high"]
    assert treatment["lift_significant"] == ((low > 0 or high < 0) and len(holdout) >= 30)
    steps = {s["id"]: s for s in metrics["steps"]}
    assert steps["buying_signal"]["paths"] == {
        "alert_sales": len(outcome.signal & treated),
        "nurture": len(treated - outcome.signal)}
    assert steps["static_nurture"]["outcomes"].get("sent", 0) + \
        steps["static_nurture"]["outcomes"].get("deferred", 0) == len(holdout)
    # everyone has left by the end: the goal, a person (the sales alert), or no checkout
    assert metrics["active"] == 0
    assert sum(metrics["exited"].values()) == 150
