"""Inbound email through Mailgun's inbound routes (its "inbound parse" webhook).

Mailgun posts each email it receives for us (a form, a multipart form, or JSON) with its
signature: ``timestamp``, ``token`` and ``signature``, the hex HMAC-SHA256 of timestamp + token
keyed with the webhook signing key (at the top level, or nested under ``signature`` in JSON).
The signature covers only the timestamp and the token, not the message: a timestamp more than
5 minutes from now is refused, and the token is what a receiver remembers against replays
(:func:`verify_mailgun`). :func:`parse_mailgun_email` reads the message: ``from``/``sender``,
``subject``, ``stripped-text`` (else ``body-plain``), ``Message-Id``, ``In-Reply-To``,
``References``.

Outbound email leaves through :mod:`channels.smtp` (Mailgun's SMTP relay or any other).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any

from channels.base import Inbound, InboundError, SignatureError, external_id, field

#: Mailgun's advice: refuse a signed timestamp further than this from now (a replay).
SIGNATURE_MAX_AGE_S = 300


def _unix_time(value: str) -> bool:
    """A plausible unix time in seconds: ASCII digits, not absurdly many."""
    return value.isascii() and value.isdigit() and len(value) <= 12


def verify_mailgun(fields: Mapping[str, Any], key: str, now: float) -> str:
    """The token of a valid, fresh Mailgun signature (:class:`SignatureError` otherwise). The
    signature covers only the timestamp and the token, not the message: the token is the key
    against replays."""
    nested = fields.get("signature")
    signed = nested if isinstance(nested, dict) else fields
    timestamp, token = field(signed, "timestamp"), field(signed, "token")
    signature = field(signed, "signature")
    if not (timestamp and token and signature):
        raise SignatureError("missing Mailgun signature: timestamp, token, signature")
    if not _unix_time(timestamp) or abs(now - int(timestamp)) > SIGNATURE_MAX_AGE_S:
        raise SignatureError("stale Mailgun signature timestamp")
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureError("invalid Mailgun signature")
    return token


def parse_mailgun_email(fields: Mapping[str, Any], max_text: int) -> Inbound:
    """The email as an inbound message; :class:`InboundError` without a sender address or text.

    The subject and thread ids are kept in ``meta["email"]`` for the reply's threading. A text
    longer than ``max_text`` is cut to that (``meta["email"]["truncated_from"]`` keeps the
    original length): refusing it would make the provider retry for hours."""
    name, address = parseaddr(field(fields, "from", "sender"))
    if "@" not in address:
        name, address = parseaddr(field(fields, "sender"))
    if "@" not in address:
        raise InboundError("no sender address: give 'from' or 'sender' as an email address")
    text = field(fields, "stripped-text", "body-plain")
    if not text:
        raise InboundError("no text: 'stripped-text' and 'body-plain' are empty")
    message_id = field(fields, "Message-Id")
    subject = field(fields, "subject")
    email: dict[str, Any] = {
        "subject": subject,
        "message_id": message_id or None,
        "in_reply_to": field(fields, "In-Reply-To") or None,
        "references": field(fields, "References").split(),
    }
    if len(text) > max_text:
        text, email["truncated_from"] = text[:max_text], len(text)
    return Inbound(
        channel="email", address=address, name=name or None, text=text, subject=subject or None,
        external_id=external_id(message_id), meta={"email": email},
    )
