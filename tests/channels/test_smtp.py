"""SmtpAdapter against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from channels.base import Delivery, PermanentError, TransientError
from channels.smtp import SmtpAdapter
from core.clock import FixedClock
from core.settings import Settings
from tests.channels.conftest import SmtpServer

CLOCK = FixedClock(datetime(2026, 11, 3, 15, 0, tzinfo=UTC))


def settings(tmp_path: Path, port: int, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "data_dir": tmp_path, "smtp_host": "127.0.0.1", "smtp_port": port,
        "smtp_timeout_s": 1.0, "email_from": "Acme Support <support@acme.example>",
        "email_domain": "mail.acme.example",
    }
    return Settings(_env_file=None, **{**fields, **overrides})  # type: ignore[call-arg]


def delivery(**overrides: Any) -> Delivery:
    fields: dict[str, Any] = {
        "outbox_id": "out_0042", "message_id": "msg_0041", "idempotency_key": "dec_7:0",
        "customer_id": "cus_1", "conversation_id": "con_1", "channel": "email",
        "address": "dana@northwind.example", "text": "The Growth plan includes SSO.",
        "purpose": "service", "is_reply": True, "subject": "Pricing",
        "in_reply_to": "<CAF=abc@mail.northwind.example>",
        "references": ["<root@mail.northwind.example>"], "company": "Acme",
    }
    return Delivery(**{**fields, **overrides})


def received(server: SmtpServer, index: int = -1) -> EmailMessage:
    envelope = server.envelopes[index]
    raw = envelope.original_content or envelope.content
    assert isinstance(raw, bytes)
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_sends_a_threaded_reply_with_a_deterministic_message_id(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    adapter = SmtpAdapter(settings(tmp_path, smtp_server.port), clock=CLOCK)
    result = adapter.send(delivery())

    assert result.provider_message_id == "<out_0042@mail.acme.example>"
    assert result.provider_status == "accepted"
    assert result.meta == {"message_id": "<out_0042@mail.acme.example>", "subject": "Re: Pricing"}
    envelope = smtp_server.envelopes[0]
    assert envelope.mail_from == "support@acme.example"
    assert envelope.rcpt_tos == ["dana@northwind.example"]
    message = received(smtp_server)
    assert message["From"] == "Acme Support <support@acme.example>"
    assert message["To"] == "dana@northwind.example"
    assert message["Subject"] == "Re: Pricing"
    assert message["Date"] == "Tue, 03 Nov 2026 15:00:00 +0000"
    assert message["Message-ID"] == "<out_0042@mail.acme.example>"
    assert message["X-Idempotency-Key"] == "dec_7:0"
    assert message["In-Reply-To"] == "<CAF=abc@mail.northwind.example>"
    assert message["References"] == (
        "<root@mail.northwind.example> <CAF=abc@mail.northwind.example>"
    )
    assert message["List-Unsubscribe"] is None
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    assert text == "The Growth plan includes SSO.\n\nBest regards,\nThe Acme team\n"


def test_a_retry_is_the_same_message(tmp_path: Path, smtp_server: SmtpServer) -> None:
    adapter = SmtpAdapter(settings(tmp_path, smtp_server.port), clock=CLOCK)
    first = adapter.send(delivery())
    again = adapter.send(delivery(attempt=2))
    assert first == again
    assert received(smtp_server, 0).as_bytes() == received(smtp_server, 1).as_bytes()


def test_marketing_carries_list_unsubscribe(tmp_path: Path, smtp_server: SmtpServer) -> None:
    adapter = SmtpAdapter(settings(tmp_path, smtp_server.port), clock=CLOCK)
    adapter.send(delivery(purpose="marketing", is_reply=False, subject="Spring sale",
                          in_reply_to=None, references=[]))
    message = received(smtp_server)
    assert message["Subject"] == "Spring sale"
    assert message["List-Unsubscribe"] == "<mailto:support@acme.example?subject=unsubscribe>"
    assert message["In-Reply-To"] is None and message["References"] is None
    body = message.get_body(("plain",))
    assert body is not None and "Reply STOP to stop these emails." in body.get_content()


def test_logs_in_when_configured(tmp_path: Path, smtp_server: SmtpServer) -> None:
    good = settings(tmp_path, smtp_server.port, smtp_username="journey", smtp_password="s3cret")
    SmtpAdapter(good, clock=CLOCK).send(delivery())
    assert smtp_server.logins == ["journey"]
    assert len(smtp_server.envelopes) == 1

    bad = settings(tmp_path, smtp_server.port, smtp_username="journey", smtp_password="nope")
    with pytest.raises(PermanentError, match="SMTP 535"):
        SmtpAdapter(bad, clock=CLOCK).send(delivery())
    assert len(smtp_server.envelopes) == 1


def test_a_refused_recipient_is_permanent_a_busy_one_transient(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    smtp_server.refuse = {
        "gone@northwind.example": "550 5.1.1 mailbox unavailable",
        "full@northwind.example": "452 4.2.2 mailbox full, try later",
    }
    adapter = SmtpAdapter(settings(tmp_path, smtp_server.port), clock=CLOCK)
    with pytest.raises(PermanentError, match=r"SMTP 550 recipient gone@northwind\.example refused"):
        adapter.send(delivery(address="gone@northwind.example"))
    with pytest.raises(TransientError, match="SMTP 452"):
        adapter.send(delivery(address="full@northwind.example"))
    assert smtp_server.envelopes == []


@pytest.mark.parametrize("address", ["no-at-sign", "dana@x.example\r\nBcc: all@x.example", ""])
def test_an_unusable_address_is_permanent_and_nothing_is_sent(
    tmp_path: Path, smtp_server: SmtpServer, address: str
) -> None:
    adapter = SmtpAdapter(settings(tmp_path, smtp_server.port), clock=CLOCK)
    with pytest.raises(PermanentError, match="cannot address an email"):
        adapter.send(delivery(address=address))
    assert smtp_server.envelopes == []


def test_a_server_that_is_down_or_silent_is_transient(
    tmp_path: Path, refusing_port: int, silent_port: int
) -> None:
    with pytest.raises(TransientError, match="unreachable: ConnectionRefusedError"):
        SmtpAdapter(settings(tmp_path, refusing_port), clock=CLOCK).send(delivery())
    with pytest.raises(TransientError, match=r"unreachable: .*timed out"):
        SmtpAdapter(settings(tmp_path, silent_port, smtp_timeout_s=0.3),
                    clock=CLOCK).send(delivery())


def test_needs_a_host(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="smtp_host"):
        SmtpAdapter(settings(tmp_path, 25, smtp_host=""))
