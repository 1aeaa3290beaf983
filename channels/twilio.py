"""SMS and WhatsApp through Twilio: its Messages API out, its webhooks in.

``POST {twilio_base_url}/2010-04-01/Accounts/{sid}/Messages.json`` (form-encoded, basic auth
sid:token) with ``Idempotency-Key`` and ``I-Twilio-Idempotency-Token`` set to the delivery's key,
so a retry after a lost answer is recognised. How an attempt ends:

- 201 → :class:`SendResult` with Twilio's message sid (``SM...``) and status (``queued``);
- a timeout, a connection error, 408, 429 or a 5xx → :class:`TransientError`;
- any other 4xx (an invalid number, an unsubscribed recipient: Twilio's code and message are in
  the error) → :class:`PermanentError`.

Twilio signs the webhooks it sends us (``X-Twilio-Signature``): base64 HMAC-SHA1, keyed with the
auth token, of the URL it called followed by every POST parameter's name and value, sorted by
name (:func:`twilio_signature`). :func:`verify_twilio_request` checks that signature over a
webhook's form fields; :func:`parse_twilio_message` reads an inbound SMS or WhatsApp message
(``From`` with a ``whatsapp:`` prefix is WhatsApp) and :func:`parse_twilio_status` a
delivery-status callback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from channels.base import (
    Delivery,
    DeliveryStatus,
    Inbound,
    InboundError,
    NotConfigured,
    PermanentError,
    SendResult,
    SignatureError,
    TransientError,
    external_id,
    field,
)
from channels.formatting import sms_segments
from core.settings import Settings

STATUS_CALLBACK_PATH = "/v1/channels/twilio/status"
WHATSAPP = "whatsapp:"

Params = Mapping[str, str | Sequence[str]]


def twilio_signature(auth_token: str, url: str, params: Params) -> str:
    """Twilio's request signature: names sorted; a repeated name contributes each value, sorted
    (as Twilio's own helper libraries do)."""
    payload = url
    for name in sorted(params):
        values = params[name]
        for value in sorted({values} if isinstance(values, str) else set(values)):
            payload += name + value
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_variants(url: str) -> list[str]:
    """The URL as given, without and with the scheme's default port: Twilio's libraries accept
    a signature over either, since a proxy may add or drop ``:443``."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    variants = [url]
    if default is not None and host:
        userinfo = parts.netloc.rpartition("@")[0]
        prefix = f"{userinfo}@" if userinfo else ""
        for netloc in (f"{prefix}{host}", f"{prefix}{host}:{default}"):
            if parts.port in (None, default):
                variants.append(urlunsplit(parts._replace(netloc=netloc)))
    return list(dict.fromkeys(variants))


def valid_twilio_signature(auth_token: str, url: str, params: Params, signature: str) -> bool:
    """Does ``signature`` sign this request? Constant-time; False for an empty token or
    signature."""
    if not auth_token or not signature:
        return False
    return any(
        hmac.compare_digest(twilio_signature(auth_token, variant, params).encode(),
                           signature.encode())
        for variant in _url_variants(url)
    )


def inbound_auth_token(settings: Settings) -> str:
    """The auth token Twilio signs its webhooks with; :class:`NotConfigured` if it is not set."""
    token = settings.twilio_auth_token.get_secret_value()
    if not token:
        raise NotConfigured("Twilio is not configured: set JOURNEY_TWILIO_AUTH_TOKEN")
    return token


def signed_url(public_url: str, received_url: str) -> str:
    """The URL Twilio signed: the configured public URL with the path and query we received,
    else the URL as we received it (a proxy in front changes it)."""
    if not public_url:
        return received_url
    parts = urlsplit(received_url)
    query = f"?{parts.query}" if parts.query else ""
    return public_url.rstrip("/") + parts.path + query


def verify_twilio_request(
    auth_token: str, url: str, fields: Mapping[str, Any], signature: str | None
) -> None:
    """Raise :class:`SignatureError` unless ``signature`` (the ``X-Twilio-Signature`` header)
    signs this webhook: ``url`` (see :func:`signed_url`) and every form field."""
    if not signature:
        raise SignatureError("missing X-Twilio-Signature header")
    params = {k: [str(x) for x in v] if isinstance(v, list) else str(v)
              for k, v in fields.items()}
    if not valid_twilio_signature(auth_token, url, params, signature):
        raise SignatureError(
            "invalid X-Twilio-Signature (if a proxy sits in front, set JOURNEY_PUBLIC_URL)"
        )


def parse_twilio_message(fields: Mapping[str, Any]) -> Inbound:
    """An inbound SMS or WhatsApp message from Twilio's messaging webhook fields; its text is
    empty for media only. :class:`InboundError` without ``From`` or ``MessageSid``."""
    sender, sid = field(fields, "From"), field(fields, "MessageSid", "SmsMessageSid")
    if not sender or not sid:
        raise InboundError("a Twilio message needs From and MessageSid")
    return Inbound(
        channel="whatsapp" if sender.startswith(WHATSAPP) else "sms",
        address=sender.removeprefix(WHATSAPP),
        name=field(fields, "ProfileName") or None,
        text=field(fields, "Body"),
        external_id=external_id(sid),
        meta={"twilio": {"to": field(fields, "To"), "num_media": field(fields, "NumMedia")}},
    )


def parse_twilio_status(fields: Mapping[str, Any]) -> DeliveryStatus:
    """A delivery-status callback (``MessageStatus``, and ``ErrorCode``/``ErrorMessage`` when it
    failed). :class:`InboundError` without ``MessageSid`` or ``MessageStatus``."""
    sid = field(fields, "MessageSid", "SmsSid")
    state = field(fields, "MessageStatus", "SmsStatus")
    if not sid or not state:
        raise InboundError("a Twilio status callback needs MessageSid and MessageStatus")
    code = field(fields, "ErrorCode")
    message = field(fields, "ErrorMessage")
    error = f"Twilio error {code}" + (f": {message}" if message else "") if code else None
    return DeliveryStatus(provider_message_id=sid, status=state, error=error)


def _twilio_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"Twilio answered {response.status_code}: {response.text[:300]}"
    code = body.get("code") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    detail = message or response.text[:300]
    return f"Twilio answered {response.status_code} (error {code}): {detail}"


class TwilioAdapter:
    name = "twilio"

    def __init__(
        self,
        settings: Settings,
        channel: Literal["sms", "whatsapp"],
        client: httpx.Client | None = None,
    ) -> None:
        sender = (
            settings.twilio_whatsapp_from if channel == "whatsapp" else settings.twilio_sms_from
        )
        missing = [
            name for name, value in (
                ("twilio_account_sid", settings.twilio_account_sid),
                ("twilio_auth_token", settings.twilio_auth_token.get_secret_value()),
                (f"twilio_{channel}_from", sender),
            ) if not value
        ]
        if missing:
            raise ValueError(f"the twilio transport for {channel} needs {', '.join(missing)}")
        self.channel = channel
        self.sid = settings.twilio_account_sid
        self.token = settings.twilio_auth_token.get_secret_value()
        self.sender = sender
        self.url = (
            f"{settings.twilio_base_url.rstrip('/')}/2010-04-01/Accounts/{self.sid}/Messages.json"
        )
        self.status_callback = (
            settings.public_url.rstrip("/") + STATUS_CALLBACK_PATH if settings.public_url else None
        )
        self.client = client or httpx.Client(timeout=settings.provider_timeout_s)

    def _number(self, number: str) -> str:
        number = number.strip()
        if self.channel == "whatsapp" and not number.startswith(WHATSAPP):
            return WHATSAPP + number
        return number

    def send(self, delivery: Delivery) -> SendResult:
        form = {"To": self._number(delivery.address), "From": self._number(self.sender),
                "Body": delivery.text}
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        headers = {"Idempotency-Key": delivery.idempotency_key,
                   "I-Twilio-Idempotency-Token": delivery.idempotency_key}
        try:
            response = self.client.post(
                self.url, data=form, headers=headers, auth=(self.sid, self.token)
            )
        except httpx.HTTPError as exc:  # timeouts, refused or dropped connections
            raise TransientError(f"Twilio unreachable: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise TransientError(_twilio_error(response))
        if status >= 400:
            raise PermanentError(_twilio_error(response))
        try:
            body = response.json()
            sid = str(body["sid"])
        except (ValueError, KeyError, TypeError) as exc:
            # accepted, but we cannot tell which message: the retry carries the same key
            raise TransientError(f"Twilio answered {status} without a message sid") from exc
        segments, encoding = sms_segments(delivery.text)
        return SendResult(
            provider_message_id=sid,
            provider_status=str(body.get("status") or "queued"),
            meta={"segments": segments, "encoding": encoding, "to": form["To"]},
        )

    def close(self) -> None:
        self.client.close()
