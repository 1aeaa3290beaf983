"""Approval: a held action waits in a LangGraph interrupt, survives a restart, runs exactly
once after approval, and never after a rejection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.graph import thread_config
from core.clock import FixedClock
from core.domain import Identity
from journey.runtime import Container
from journey.turns import ApprovalConflict, InboundRequest, TurnResult
from policy.loader import default_policy_path
from tests import fakes
from tests.conftest import ContainerFactory
from tests.server import client, running_server

COMPLAINT = "I'm really unhappy with the service, this is the third outage this month"


def complain(c: Container, email: str = "rosa@bluefin.example") -> TurnResult:
    """A paying customer complains; the rules brain proposes a goodwill credit."""
    if c.store.find_customer(Identity(kind="email", value=email)) is None:
        identities = [
            Identity(kind="email", value=email), Identity(kind="web_chat_id", value="wc_" + email)
        ]
        c.store.create_customer(
            identities, "retention", name="Rosa Blue", consent={"web_chat": "granted"}
        )
    return c.orchestrator.handle_message(
        InboundRequest.model_validate(
            {"channel": "web_chat", "customer": {"email": email, "web_chat_id": "wc_" + email},
             "text": COMPLAINT}
        )
    )


def credits(c: Container, customer_id: str) -> list[dict[str, object]]:
    return [a for a in c.store.crm_activities(customer_id) if a["kind"] == "credit"]


def test_a_credit_waits_for_approval_and_the_turn_answers_meanwhile(
    make_container: ContainerFactory,
) -> None:
    c = make_container()
    turn = complain(c)

    by_tool = {a.tool: a for a in turn.actions}
    credit = by_tool["issue_credit"]
    assert (credit.outcome, credit.executed) == ("allow", False)
    assert credit.reason_codes == ["approval_required"]
    assert credit.arguments["amount"] == 20.0
    assert by_tool["escalate_to_human"].executed
    assert turn.reply is not None and "approve a goodwill credit" in turn.reply
    [approval] = c.store.approvals(status="pending")
    assert approval.id == turn.decision.verdicts[credit_index(turn)].approval_id
    assert approval.action == {"tool": "issue_credit", "amount": 20.0,
                               "reason": f"goodwill: {COMPLAINT}"}
    # the turn is paused in the interrupt, checkpointed
    snapshot = c.orchestrator.graph.get_state(thread_config(turn.message_id))
    assert snapshot.next == ("await_approval",)
    assert credits(c, turn.customer_id) == []
    profile = c.store.get_customer(turn.customer_id)
    assert profile is not None and "credit_balance" not in profile.attributes


def credit_index(turn: TurnResult) -> int:
    return next(i for i, v in enumerate(turn.decision.verdicts) if v.tool == "issue_credit")


def test_approval_survives_a_restart_and_runs_exactly_once(
    make_container: ContainerFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "shared"
    before = make_container(data_dir=data_dir)
    turn = complain(before)
    [pending] = before.store.approvals(status="pending")
    before.close()  # the server stops: the pause lives only in the checkpoint database

    after = make_container(data_dir=data_dir)
    snapshot = after.orchestrator.graph.get_state(thread_config(turn.message_id))
    assert snapshot.next == ("await_approval",)
    first = after.orchestrator.decide_approval(pending.id, approve=True, by="ana@acme")
    assert first.status == "approved"
    assert first.decided_by == "ana@acme"
    assert first.result["executed"] is True and first.result["credited"] == 20.0
    again = after.orchestrator.decide_approval(pending.id, approve=True, by="bob@acme")
    assert again == first  # the first result, not a second run

    [credit] = credits(after, turn.customer_id)
    assert credit["body"]["amount"] == 20.0
    profile = after.store.get_customer(turn.customer_id)
    assert profile is not None and profile.attributes["credit_balance"] == 20.0
    done = after.orchestrator.graph.get_state(thread_config(turn.message_id))
    assert done.next == ()
    assert done.values["approval"]["status"] == "approved"
    with pytest.raises(ApprovalConflict, match="already approved by ana@acme"):
        after.orchestrator.decide_approval(pending.id, approve=False, by="bob@acme")


def test_concurrent_approvals_run_the_side_effect_once(make_container: ContainerFactory) -> None:
    c = make_container()
    turn = complain(c)
    [pending] = c.store.approvals(status="pending")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda i: c.orchestrator.decide_approval(pending.id, approve=True, by=f"agent{i}"),
            range(8),
        ))
    assert {r.status for r in results} == {"approved"}
    assert len({(r.decided_by, r.decided_at) for r in results}) == 1
    assert len(credits(c, turn.customer_id)) == 1


def test_a_rejection_runs_nothing(make_container: ContainerFactory) -> None:
    c = make_container()
    turn = complain(c)
    [pending] = c.store.approvals(status="pending")
    outbox_before = c.store.outbox(turn.customer_id)

    rejected = c.orchestrator.decide_approval(pending.id, approve=False, by="ana", note="no")
    assert (rejected.status, rejected.note, rejected.result) == ("rejected", "no", {})
    assert c.orchestrator.decide_approval(pending.id, approve=False, by="bob") == rejected
    with pytest.raises(ApprovalConflict, match="already rejected"):
        c.orchestrator.decide_approval(pending.id, approve=True, by="bob")
    assert credits(c, turn.customer_id) == []
    assert c.store.outbox(turn.customer_id) == outbox_before
    profile = c.store.get_customer(turn.customer_id)
    assert profile is not None and "credit_balance" not in profile.attributes


def test_approvals_over_http(make_container: ContainerFactory) -> None:
    c = make_container(api_keys={"test-admin": ["admin"], "reader": ["conversations:read"],
                                 "approver": ["approvals:write"]})
    turn = complain(c)
    with running_server(c) as base:
        reader, approver = client(base, "reader"), client(base, "approver")
        [listed] = reader.get("/v1/approvals").json()
        assert listed["status"] == "pending" and listed["customer_id"] == turn.customer_id
        url = f"/v1/approvals/{listed['id']}"

        assert reader.post(url + "/approve", json={"by": "x"}).status_code == 403
        missing_by = approver.post(url + "/approve", json={})
        assert missing_by.status_code == 422 and "by" in missing_by.json()["detail"]
        assert approver.post("/v1/approvals/apv_nope/approve", json={"by": "x"}).status_code == 404

        first = approver.post(url + "/approve", json={"by": "ana", "note": "ok"})
        second = approver.post(url + "/approve", json={"by": "bob"})
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        assert first.json()["result"]["credited"] == 20.0
        conflict = approver.post(url + "/reject", json={"by": "bob"})
        assert conflict.status_code == 409 and "already approved" in conflict.json()["detail"]
        assert reader.get("/v1/approvals").json() == []
        view = reader.get(f"/v1/conversations/{turn.conversation_id}").json()
        assert [a["status"] for a in view["approvals"]] == ["approved"]
    assert len(credits(c, turn.customer_id)) == 1


def test_an_approval_whose_pause_was_lost_still_runs_once(
    make_container: ContainerFactory,
) -> None:
    """The turn was recorded but its checkpoint is gone (say the process died in between):
    approving runs the same node body directly, once."""
    c = make_container()
    turn = complain(c)
    [pending] = c.store.approvals(status="pending")
    c.checkpointer.delete_thread(f"turn:{turn.message_id}")
    assert c.orchestrator.graph.get_state(thread_config(turn.message_id)).next == ()

    approved = c.orchestrator.decide_approval(pending.id, approve=True, by="ana")
    assert approved.status == "approved" and approved.result["credited"] == 20.0
    assert c.orchestrator.decide_approval(pending.id, approve=True, by="ana") == approved
    assert len(credits(c, turn.customer_id)) == 1


def test_credits_approved_at_once_for_one_customer_both_count(
    make_container: ContainerFactory,
) -> None:
    c = make_container()
    first = complain(c)
    for h in c.store.handoffs(first.customer_id):
        c.store.set_handoff_status(h.id, "resolved")
    complain(c)
    pending = c.store.approvals(status="pending")
    assert len(pending) == 2
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(
            lambda a: c.orchestrator.decide_approval(a.id, approve=True, by="ana"), pending
        ))
    profile = c.store.get_customer(first.customer_id)
    assert profile is not None and profile.attributes["credit_balance"] == 40.0
    assert len(credits(c, first.customer_id)) == 2


def test_an_approved_marketing_message_still_waits_for_the_morning(
    make_container: ContainerFactory, tmp_path: Path, clock: FixedClock
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(default_policy_path().read_text().replace(
        "approvals:\n  - {tool: issue_credit}",
        "approvals:\n  - {tool: issue_credit}\n  - {tool: send_message, purposes: [marketing]}",
    ))
    model = fakes.ScriptedModel(fakes.content(fakes.decision(
        intent="small_talk", stage="awareness", reply="Happy to help!",
        actions=[{"tool": "send_message", "channel": "email", "purpose": "marketing",
                  "text": "New: journey templates for retail."}],
    )))
    c = make_container(brain="openai", llm_mode="json_schema", llm_http_client=model.client(),
                       policy_path=policy)
    c.store.create_customer(
        [Identity(kind="email", value="nia@x.example"), Identity(kind="web_chat_id", value="wc_n")],
        "awareness", timezone="America/New_York",
        consent={"email": {"service": "granted", "marketing": "granted"}},
    )
    clock.advance(seconds=12.5 * 3600)  # 03:30 UTC = 22:30 in New York
    turn = c.orchestrator.handle_message(InboundRequest.model_validate(
        {"channel": "web_chat", "customer": {"web_chat_id": "wc_n"}, "text": "hello"}
    ))
    held = next(a for a in turn.actions if a.approval_id)
    assert held.reason_codes == ["quiet_hours_deferred", "approval_required"]
    clock.advance(seconds=600)  # approved at 22:40 local
    approved = c.orchestrator.decide_approval(held.approval_id, approve=True, by="ana")
    assert approved.status == "approved"
    [mail] = [o for o in c.store.outbox(turn.customer_id) if o["channel"] == "email"]
    assert mail["status"] == "scheduled"
    assert mail["not_before"].replace(tzinfo=UTC) == datetime(2026, 11, 4, 13, 0, tzinfo=UTC)
