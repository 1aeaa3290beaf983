"""Email over SMTP (smtplib): one connection per message, STARTTLS and login when configured.

The ``Message-ID`` is made from the outbox row (``<outbox_id@email_domain>``), so a retry sends
the same message again and a receiving system that has it already sees a duplicate: for email
that is the idempotency key (also sent as ``X-Idempotency-Key``). How an attempt ends:

- connection refused, timeout, dropped connection, a 4xx reply → :class:`TransientError`;
- a 5xx reply (recipient refused, sender refused, message rejected, bad credentials) or an
  address that cannot be put in a header → :class:`PermanentError`; fix the cause, then replay
  the dead letters (``journey outbox replay``).
"""

from __future__ import annotations

import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses

from channels.base import Delivery, PermanentError, SendResult, TransientError
from channels.formatting import compose_email
from core.clock import Clock, SystemClock
from core.settings import Settings


def message_id(outbox_id: str, domain: str) -> str:
    """The deterministic Message-ID of an outbox row."""
    return f"<{outbox_id}@{domain}>"


def _bracketed(value: str) -> str:
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def _from_address(email_from: str) -> str:
    """The bare address of ``email_from`` ("Journey <hello@x>" → "hello@x")."""
    parsed = getaddresses([email_from])
    return parsed[0][1] if parsed and parsed[0][1] else email_from


def _reply_error(code: int, message: bytes | str, what: str) -> Exception:
    text = message.decode(errors="replace") if isinstance(message, bytes) else message
    error = f"SMTP {code} {what}: {text}"
    return PermanentError(error) if 500 <= code < 600 else TransientError(error)


class SmtpAdapter:
    name = "smtp"

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        if not settings.smtp_host:
            raise ValueError("the smtp transport needs smtp_host (JOURNEY_SMTP_HOST)")
        self.settings = settings
        self.clock = clock or SystemClock()

    def build_message(self, delivery: Delivery) -> EmailMessage:
        """The email for ``delivery``; the same delivery always gives the same headers."""
        s = self.settings
        subject, body = compose_email(delivery)
        msg = EmailMessage()
        try:
            msg["From"] = s.email_from
            msg["To"] = Address(addr_spec=delivery.address.strip())
            msg["Subject"] = subject
        except (ValueError, IndexError) as exc:  # CR/LF, no "@", an empty address
            raise PermanentError(f"cannot address an email to {delivery.address!r}: {exc}") from exc
        msg["Date"] = format_datetime(self.clock.now())
        msg["Message-ID"] = message_id(delivery.outbox_id, s.email_domain)
        msg["X-Idempotency-Key"] = delivery.idempotency_key
        references = [_bracketed(r) for r in delivery.references if r.strip()]
        if delivery.in_reply_to:
            parent = _bracketed(delivery.in_reply_to)
            msg["In-Reply-To"] = parent
            if parent not in references:
                references.append(parent)
        if references:
            msg["References"] = " ".join(references)
        if delivery.purpose == "marketing":
            msg["List-Unsubscribe"] = f"<mailto:{_from_address(s.email_from)}?subject=unsubscribe>"
        msg.set_content(body)
        return msg

    def send(self, delivery: Delivery) -> SendResult:
        s = self.settings
        msg = self.build_message(delivery)
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_s) as smtp:
                if s.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()), (550, b"refused"))
            raise _reply_error(code, reply, f"recipient {delivery.address} refused") from exc
        except smtplib.SMTPResponseException as exc:  # sender refused, data error, auth, ...
            raise _reply_error(exc.smtp_code, exc.smtp_error, "reply") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"SMTP server at {s.smtp_host}: {exc}") from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused, timeout, disconnected
            raise TransientError(
                f"SMTP {s.smtp_host}:{s.smtp_port} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        mid = str(msg["Message-ID"])
        return SendResult(
            provider_message_id=mid, provider_status="accepted",
            meta={"message_id": mid, "subject": str(msg["Subject"])},
        )

    def close(self) -> None:
        """Nothing to close: a connection lives for one message."""
