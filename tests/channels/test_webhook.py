"""WebhookAdapter against a real receiver, and the signature scheme."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.base import Delivery, PermanentError, TransientError
from channels.webhook import (
    WebhookAdapter,
    sign_webhook,
    verify_webhook,
    webhook_signature_problem,
)
from core.clock import FixedClock
from core.settings import Settings
from tests.providers import WebhookReceiver

CLOCK = FixedClock(datetime(2026, 11, 3, 15, 0, tzinfo=UTC))
NOW = CLOCK.now().timestamp()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret="wh-secret", now=lambda: NOW) as fake:
        yield fake


def adapter(tmp_path: Path, url: str, secret: str = "wh-secret", **extra: Any) -> WebhookAdapter:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path, webhook_url=url, webhook_secret=secret, **extra,
    )
    return WebhookAdapter(settings, "sms", clock=CLOCK)


def delivery(**overrides: Any) -> Delivery:
    fields: dict[str, Any] = {
        "outbox_id": "out_1", "message_id": "msg_7", "idempotency_key": "dec_3:0",
        "customer_id": "cus_1", "conversation_id": "con_2", "channel": "sms",
        "address": "+14155550100", "text": "Grüße — see you soon", "purpose": "service",
        "is_reply": True,
    }
    return Delivery(**{**fields, **overrides})


def test_posts_signed_json(tmp_path: Path, receiver: WebhookReceiver) -> None:
    result = adapter(tmp_path, receiver.base_url + "/hooks/sms").send(delivery())

    [call] = receiver.received
    assert call["path"] == "/hooks/sms"
    assert call["json"] == {
        "id": "msg_7", "idempotency_key": "dec_3:0", "channel": "sms",
        "address": "+14155550100", "text": "Grüße — see you soon", "purpose": "service",
        "customer_id": "cus_1", "conversation_id": "con_2", "is_reply": True,
    }
    assert call["headers"]["idempotency-key"] == "dec_3:0"
    assert call["headers"]["x-journey-signature"].startswith(f"t={int(NOW)},v1=")
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith("wh_")
    assert result.provider_status == "accepted"


def test_a_retry_after_a_lost_answer_is_recorded_once(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    sender = adapter(tmp_path, receiver.base_url)
    receiver.fail_after_rate = 1.0
    with pytest.raises(TransientError, match="webhook answered 500"):
        sender.send(delivery())
    receiver.fail_after_rate = 0.0
    sender.send(delivery(attempt=2))
    assert len(receiver.received) == 1
    assert receiver.replays == 1


def test_failures_map_to_transient_and_permanent(
    tmp_path: Path, receiver: WebhookReceiver, refusing_port: int
) -> None:
    receiver.down = True
    with pytest.raises(TransientError, match="webhook answered 503"):
        adapter(tmp_path, receiver.base_url).send(delivery())
    receiver.down = False
    with pytest.raises(PermanentError, match="webhook answered 401"):
        adapter(tmp_path, receiver.base_url, secret="not-the-receivers").send(delivery())
    with pytest.raises(TransientError, match="webhook unreachable"):
        adapter(tmp_path, f"http://127.0.0.1:{refusing_port}").send(delivery())
    assert receiver.received == []


def test_needs_url_and_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="webhook_url and webhook_secret"):
        adapter(tmp_path, "http://127.0.0.1:9/", secret="")


def test_signature_round_trip_and_rejections() -> None:
    body = json.dumps({"text": "hi"}).encode()
    header = sign_webhook("s3cret", body, 1_700_000_000)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify_webhook("s3cret", header, body, now=1_700_000_100)
    assert not verify_webhook("s3cret", header, body + b" ", now=1_700_000_100)
    assert not verify_webhook("other", header, body, now=1_700_000_100)
    assert not verify_webhook("s3cret", header, body, now=1_700_000_301)
    assert not verify_webhook("s3cret", header, body, now=1_699_999_699)
    assert verify_webhook("s3cret", header, body, now=1_700_000_500, tolerance_s=600)
    # during a secret rotation a sender may sign with both
    rotated = header + ",v1=" + sign_webhook("new", body, 1_700_000_000).split("v1=")[1]
    assert verify_webhook("new", rotated, body, now=1_700_000_000)
    assert verify_webhook("s3cret", rotated, body, now=1_700_000_000)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (None, "missing X-Journey-Signature header"),
        ("", "missing X-Journey-Signature header"),
        ("v1=abc", "malformed"),
        ("t=abc,v1=abc", "malformed"),
        ("t=1700000000", "malformed"),
        ("t=1600000000,v1=abc", "stale"),
        ("t=1700000000,v1=abc", "invalid X-Journey-Signature"),
    ],
)
def test_signature_problems_are_named(header: str | None, problem: str) -> None:
    found = webhook_signature_problem("s3cret", header, b"{}", now=1_700_000_000)
    assert found is not None and problem in found
