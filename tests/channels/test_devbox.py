"""DevboxAdapter: one JSON line per message, once per idempotency key."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from channels.base import Delivery
from channels.devbox import DevboxAdapter
from core.clock import FixedClock

CLOCK = FixedClock(datetime(2026, 11, 3, 15, 0, tzinfo=UTC))


def delivery(**overrides: Any) -> Delivery:
    fields: dict[str, Any] = {
        "outbox_id": "out_1", "message_id": "msg_1", "idempotency_key": "dec_1:0",
        "customer_id": "cus_1", "conversation_id": "con_1", "channel": "email",
        "address": "dana@northwind.example", "text": "Hello Dana", "purpose": "service",
        "is_reply": True, "subject": "Pricing", "company": "Acme",
    }
    return Delivery(**{**fields, **overrides})


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_writes_one_line_per_message_with_the_email_as_sent(tmp_path: Path) -> None:
    adapter = DevboxAdapter(tmp_path / "outbox", "email", clock=CLOCK)
    result = adapter.send(delivery())
    adapter.send(delivery(outbox_id="out_2", message_id="msg_2", idempotency_key="dec_2:0",
                          text="Second"))
    path = tmp_path / "outbox" / "email.jsonl"
    first, second = lines(path)
    assert first == {
        "idempotency_key": "dec_1:0", "outbox_id": "out_1", "message_id": "msg_1",
        "channel": "email", "to": "dana@northwind.example", "text": "Hello Dana",
        "purpose": "service", "is_reply": True, "customer_id": "cus_1",
        "conversation_id": "con_1", "written_at": "2026-11-03T15:00:00+00:00",
        "subject": "Re: Pricing", "body": "Hello Dana\n\nBest regards,\nThe Acme team\n",
    }
    assert second["text"] == "Second"
    assert result.provider_status == "written"
    assert result.meta == {"file": str(path), "duplicate": False}


def test_sms_lines_count_segments(tmp_path: Path) -> None:
    adapter = DevboxAdapter(tmp_path, "sms", clock=CLOCK)
    adapter.send(delivery(channel="sms", address="+14155550100", text="€" * 81))
    [line] = lines(tmp_path / "sms.jsonl")
    assert (line["segments"], line["encoding"]) == (2, "GSM-7")


def test_a_key_is_written_once_even_from_many_threads_and_instances(tmp_path: Path) -> None:
    adapters = [DevboxAdapter(tmp_path, "email", clock=CLOCK) for _ in range(2)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: adapters[i % 2].send(delivery()), range(16)))
    assert len(lines(tmp_path / "email.jsonl")) == 1
    assert sum(not r.meta["duplicate"] for r in results) == 1
    assert {r.provider_message_id for r in results} == {"devbox:dec_1:0"}
