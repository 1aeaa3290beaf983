"""The outbox relay and inbound dedupe against a real local Twilio-speaking HTTP server.

- a provider failing 30% of calls (some after doing the work), then down for a minute:
  nothing lost, nothing sent twice, failures dead-lettered, replay delivers them;
- 50 concurrent deliveries of one signed inbound webhook: one stored message, one reply;
- several workers (two "processes": two engines) share the queue: each message once.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from core.clock import FixedClock
from journey.runtime import Container
from journey.turns import CustomerRef, InboundRequest
from journey.worker import Worker
from tests.conftest import ContainerFactory
from tests.providers import FakeTwilio
from tests.server import bound_socket, one_worker, running_server

SID = "AC" + "0" * 32


def _twilio_settings(twilio: FakeTwilio, **extra: Any) -> dict[str, Any]:
    return {
        "twilio_base_url": twilio.base_url, "twilio_account_sid": twilio.account_sid,
        "twilio_auth_token": twilio.auth_token, "twilio_sms_from": "+14155550199",
        "twilio_whatsapp_from": "+14155550198", **extra,
    }


def _sms_turns(container: Container, n: int) -> None:
    """``n`` customers text us; their turns run and each queues one SMS reply."""
    for i in range(n):
        container.orchestrator.accept(InboundRequest(
            channel="sms", customer=CustomerRef(phone=f"+1415555{i:04d}"),
            text="Hi, what plans do you offer?", external_id=f"SMin{i:04d}",
        ))
    worker = one_worker(container, "turns")
    while worker.run_jobs():
        pass


def test_a_flaky_then_down_provider_loses_nothing_and_sends_nothing_twice(
    make_container: ContainerFactory, clock: FixedClock
) -> None:
    n = 40
    with FakeTwilio(fail_rate=0.3, fail_after_rate=0.1, seed=7) as twilio:
        container = make_container(**_twilio_settings(
            twilio, outbox_max_attempts=4, outbox_backoff_base_s=2.0,
            outbox_backoff_max_s=30.0,
        ))
        _sms_turns(container, n)
        queue = container.store.outbox_queue
        assert queue.counts() == {"pending": n}
        worker = one_worker(container)

        def run_for(seconds: int) -> None:
            for _ in range(seconds):
                worker.relay(limit=5)
                clock.advance(seconds=1)

        run_for(15)  # 30% of calls fail (a third of those after Twilio did the work)
        twilio.down = True
        run_for(60)  # down for a minute
        twilio.down = False
        run_for(120)
        counts = queue.counts()
        assert set(counts) <= {"sent", "dead"} and counts["dead"] > 0, counts
        dead = queue.list(status="dead")
        assert all("after 4 attempts" in (r.last_error or "") for r in dead)
        # replay: the dead letters go out; the ones Twilio had already taken are recognised
        # by their idempotency key and not sent again
        assert queue.replay() == len(dead)
        run_for(60)
    rows = queue.list()
    assert {r.status for r in rows} == {"sent"}
    keys = [m["idempotency_key"] for m in twilio.messages]
    assert len(keys) == len(set(keys)) == n  # each message processed exactly once
    assert set(keys) == {r.idempotency_key for r in rows}
    sid_by_key = {m["idempotency_key"]: m["sid"] for m in twilio.messages}
    assert all(r.provider_message_id == sid_by_key[r.idempotency_key] for r in rows)
    assert twilio.replays > 0  # ambiguous failures happened and were absorbed
    assert all(m["to"].startswith("+1415555") and m["from"] == "+14155550199"
               for m in twilio.messages)


def test_a_permanent_error_is_dead_lettered_at_once(
    make_container: ContainerFactory, clock: FixedClock
) -> None:
    with FakeTwilio() as twilio:
        twilio.invalid_numbers.add("+14155550001")
        container = make_container(**_twilio_settings(twilio))
        _sms_turns(container, 2)
        worker = one_worker(container)
        worker.relay()
    by_address = {r.address: r for r in container.store.outbox_queue.list()}
    bad = by_address["+14155550001"]
    assert (bad.status, bad.attempts) == ("dead", 1)
    assert "21211" in (bad.last_error or "") and bad.last_error.startswith("permanent")
    assert by_address["+14155550000"].status == "sent"


def test_fifty_concurrent_deliveries_of_one_webhook_store_one_message_and_send_one_reply(
    make_container: ContainerFactory,
) -> None:
    with FakeTwilio() as twilio:
        container = make_container(**_twilio_settings(twilio))
        with running_server(container) as base:
            url = f"{base}/v1/channels/twilio/inbound"
            start = threading.Barrier(50)

            def deliver(_: int) -> int:
                start.wait()
                return twilio.send_inbound(url, "+14155550123", "Do you have an annual plan?",
                                           sid="SMdup0001").status_code

            with ThreadPoolExecutor(50) as pool:
                codes = list(pool.map(deliver, range(50)))
            assert codes == [200] * 50
            worker = one_worker(container)
            while worker.run_once():
                pass
    store = container.store
    assert store.inbound_count("sms", "SMdup0001") == 1
    assert len(store.jobs.list(kind="turn")) == 1
    assert len(store.decisions()) == 1
    (reply,) = twilio.messages
    assert reply["to"] == "+14155550123" and reply["body"]
    (row,) = store.outbox_queue.list()
    assert (row.status, row.provider_message_id) == ("sent", reply["sid"])


def test_status_callbacks_record_delivery(make_container: ContainerFactory) -> None:
    sock = bound_socket()
    with FakeTwilio() as twilio:
        # where Twilio calls back, and the URL it signs
        container = make_container(**_twilio_settings(
            twilio, public_url=f"http://127.0.0.1:{sock.getsockname()[1]}"))
        _sms_turns(container, 1)
        with running_server(container, sock=sock) as base:
            worker = one_worker(container)
            worker.relay()
            (message,) = twilio.messages
            assert message["status_callback"] == f"{base}/v1/channels/twilio/status"
            assert twilio.report_status(message["sid"], "delivered").status_code == 200
    (row,) = container.store.outbox_queue.list()
    assert (row.status, row.provider_status) == ("sent", "delivered")


@pytest.mark.slow
def test_several_workers_share_the_queue_and_send_each_message_once(
    make_container: ContainerFactory,
) -> None:
    n = 60
    with FakeTwilio() as twilio:
        first = make_container(**_twilio_settings(twilio))
        second = make_container(**_twilio_settings(twilio))  # another process's engine
        _sms_turns(first, n)
        workers = [one_worker(first, "a1"), one_worker(first, "a2"), one_worker(second, "b1")]
        go = threading.Barrier(len(workers))
        handled: dict[str, int] = {}

        def drain(worker: Worker) -> None:
            go.wait()
            total = 0
            while count := worker.relay(limit=3):
                total += count
            handled[worker.name] = total

        threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert sum(handled.values()) == n
    assert twilio.calls == n  # nobody sent a message another worker had claimed
    assert len({m["idempotency_key"] for m in twilio.messages}) == n
    assert first.store.outbox_queue.counts() == {"sent": n}
