"""Provider webhooks: inbound SMS/WhatsApp (Twilio), inbound email (Mailgun-style), a generic
signed webhook, and Twilio's delivery-status callbacks.

Each request is authenticated before anything is stored: a missing or wrong signature is a 403
and the database is untouched. A signature is used once: a signed Mailgun or generic webhook
whose signature was already accepted is a replay, a 403 before anything is stored
(:class:`journey.replay.ReplayGuard`, shared by every process through the database). An
accepted message is stored and its turn queued (``Orchestrator.accept``); the reply leaves
later through the outbox, never in the webhook's answer, so a provider that delivers the same
message again (the same message id under a new signature, or Twilio's same MessageSid) gets the
first result and nothing is sent twice. Bodies are read raw (signatures cover the exact bytes)
and parsed here: form-encoded, multipart or JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from email.utils import parseaddr
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from agent.service import Accepted, CustomerRef, InboundRequest
from api.deps import ContainerDep, check_api_key
from api.forms import multipart_fields
from channels.twilio import WHATSAPP, valid_twilio_signature
from channels.webhook import (
    SIGNATURE_HEADER,
    TOLERANCE_S,
    sign_webhook,
    webhook_signature_problem,
)
from core.settings import Settings
from journey.replay import ReplayGuard
from journey.runtime import Container

router = APIRouter(prefix="/v1/channels", tags=["channels"])

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
#: Mailgun's advice: refuse a signed timestamp further than this from now (a replay).
EMAIL_SIGNATURE_MAX_AGE_S = 300
#: An accepted signature is remembered for its window on both sides of its timestamp, so it is
#: refused as long as it could pass as fresh (another process's clock may differ a little).
EMAIL_REPLAY_MEMORY_S = 2 * EMAIL_SIGNATURE_MAX_AGE_S
WEBHOOK_REPLAY_MEMORY_S = 2 * TOLERANCE_S
REPLAYED = "this signature was already used: a replay is refused"
MAX_EXTERNAL_ID = 200
#: InboundRequest's limit on text
MAX_TEXT = 4000

_DENIED = {"description": "missing, invalid or replayed signature; nothing was stored"}
_UNCONFIGURED = {"description": "the provider's secret is not configured"}
_TWIML = {"description": "empty TwiML: the reply is sent later", "content": {"text/xml": {}}}


class StatusRecorded(BaseModel):
    """A delivery-status callback, and whether an outbox row had that provider message id."""

    message_sid: str
    status: str
    updated: bool
    detail: str


def _now(container: Container) -> float:
    return container.store.clock.now().timestamp()


def _invalid(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def inbound_request(**fields: Any) -> InboundRequest:
    """An InboundRequest, or a 422 naming what is wrong."""
    try:
        return InboundRequest(**fields)
    except ValidationError as exc:
        raise _invalid(_errors(exc)) from exc


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _external_id(value: str | None) -> str | None:
    """A provider's message id as our dedupe key; one too long to store is hashed."""
    value = (value or "").strip()
    if len(value) > MAX_EXTERNAL_ID:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value or None


async def _fields(request: Request) -> tuple[bytes, dict[str, Any]]:
    """(raw body, fields): a form, a multipart form or a JSON object; repeated form names keep
    all values (a list), as Twilio signs them."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(raw or b"{}")
        except (ValueError, RecursionError) as exc:
            raise _invalid(f"the body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise _invalid("the body must be a JSON object")
        return raw, data
    if kind == "multipart/form-data":
        parts: dict[str, Any] = {}
        for name, text in multipart_fields(content_type, raw):
            parts.setdefault(name, text)
        return raw, parts
    fields: dict[str, Any] = {}
    for name, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        current = fields.get(name)
        if current is None:
            fields[name] = value
        else:
            fields[name] = [*current, value] if isinstance(current, list) else [current, value]
    return raw, fields


def _text(fields: dict[str, Any], *names: str) -> str:
    """The first non-empty of ``names`` (case-insensitive), as a string."""
    lowered = {k.lower(): v for k, v in fields.items()}
    for name in names:
        value = lowered.get(name.lower())
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


async def _accept_once(
    container: Container, source: str, key: str, memory_s: float, inbound: InboundRequest,
    meta: dict[str, Any] | None = None,
) -> Accepted:
    """Store ``inbound`` if its signature ``key`` was never used (403 otherwise, nothing stored).

    The key is recorded (and committed) first. If storing then fails, the key is released so
    the provider's retry of this request is accepted. A process killed between the two steps
    leaves the key recorded and nothing stored: the provider's retries with that signature are
    refused until it expires (a new delivery with a new signature is accepted). A failure after
    the message was stored but before its turn was queued releases the key too: for Mailgun,
    whose signature does not cover the body, the token is then usable once more in its window."""
    store = container.store
    guard = ReplayGuard(store.engine, store.clock)
    until = store.clock.now() + timedelta(seconds=memory_s)
    if not await run_in_threadpool(guard.first_use, source, key, until):
        raise HTTPException(status.HTTP_403_FORBIDDEN, REPLAYED)
    try:
        return await run_in_threadpool(container.orchestrator.accept, inbound, meta=meta)
    except Exception:
        await run_in_threadpool(guard.release, source, key)
        raise


# --- Twilio --------------------------------------------------------------------------------
#
# No replay table for Twilio: its signature covers the URL and every form field, so a replay
# cannot change the sender, the text or anything else; and an identical replay carries the same
# MessageSid, the message's external id, which stores it once (``duplicate``). Twilio's own
# retries are deduplicated the same way.


def _signed_url(request: Request, settings: Settings) -> str:
    """The URL Twilio signed: the configured public URL with this path, else the one we got."""
    if not settings.public_url:
        return str(request.url)
    query = request.url.query
    return settings.public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


async def _twilio_fields(request: Request, settings: Settings) -> dict[str, Any]:
    """The form fields of a request Twilio signed; 503/403 otherwise, before any side effect."""
    token = settings.twilio_auth_token.get_secret_value()
    if not token:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "Twilio is not configured: set JOURNEY_TWILIO_AUTH_TOKEN",
        )
    _, fields = await _fields(request)
    signature = request.headers.get("x-twilio-signature")
    if not signature:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing X-Twilio-Signature header")
    params = {k: [str(x) for x in v] if isinstance(v, list) else str(v)
              for k, v in fields.items()}
    if not valid_twilio_signature(token, _signed_url(request, settings), params, signature):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "invalid X-Twilio-Signature (if a proxy sits in front, set JOURNEY_PUBLIC_URL)",
        )
    return fields


@router.post(
    "/twilio/inbound",
    response_class=Response,
    responses={200: _TWIML, 403: _DENIED, 422: {"description": "no From or MessageSid"},
               503: _UNCONFIGURED},
)
async def twilio_inbound(request: Request, container: ContainerDep) -> Response:
    """An SMS or WhatsApp message (Twilio's messaging webhook, form-encoded, signed).

    `From` with a `whatsapp:` prefix is WhatsApp, else SMS; `MessageSid` deduplicates Twilio's
    retries. Answers an empty TwiML document: the reply goes out through the outbox. A message
    without text (media only) is acknowledged and not stored: the agent reads text."""
    fields = await _twilio_fields(request, container.settings)
    sender, sid = _text(fields, "From"), _text(fields, "MessageSid", "SmsMessageSid")
    if not sender or not sid:
        raise _invalid("a Twilio message needs From and MessageSid")
    text = _text(fields, "Body")
    if text:
        whatsapp = sender.startswith(WHATSAPP)
        inbound = inbound_request(
            channel="whatsapp" if whatsapp else "sms",
            customer=CustomerRef(phone=sender.removeprefix(WHATSAPP),
                                 name=_text(fields, "ProfileName") or None),
            text=text,
            external_id=_external_id(sid),
        )
        meta = {"twilio": {"to": _text(fields, "To"), "num_media": _text(fields, "NumMedia")}}
        await run_in_threadpool(container.orchestrator.accept, inbound, meta=meta)
    return Response(EMPTY_TWIML, media_type="text/xml")


@router.post(
    "/twilio/status",
    response_model=StatusRecorded,
    responses={403: _DENIED, 422: {"description": "no MessageSid or MessageStatus"},
               503: _UNCONFIGURED},
)
async def twilio_status(request: Request, container: ContainerDep) -> StatusRecorded:
    """Twilio's delivery-status callback (`StatusCallback` of each message we send): records
    `MessageStatus` (and `ErrorCode`) on the outbox row. An unknown sid is still a 200 (a retry
    cannot help) with `updated: false`."""
    fields = await _twilio_fields(request, container.settings)
    sid = _text(fields, "MessageSid", "SmsSid")
    state = _text(fields, "MessageStatus", "SmsStatus")
    if not sid or not state:
        raise _invalid("a Twilio status callback needs MessageSid and MessageStatus")
    code = _text(fields, "ErrorCode")
    message = _text(fields, "ErrorMessage")
    error = f"Twilio error {code}" + (f": {message}" if message else "") if code else None
    updated = await run_in_threadpool(
        container.store.outbox_queue.record_delivery_status, sid, state, error
    )
    detail = "recorded" if updated else f"no outbound message has the sid {sid}; ignored"
    return StatusRecorded(message_sid=sid, status=state, updated=updated, detail=detail)


# --- email -----------------------------------------------------------------------------------


def _unix_time(value: str) -> bool:
    """A plausible unix time in seconds: ASCII digits, not absurdly many."""
    return value.isascii() and value.isdigit() and len(value) <= 12


def _check_mailgun_signature(fields: dict[str, Any], key: str, now: float) -> str:
    """The token of a valid, fresh Mailgun signature (403 otherwise). The signature covers only
    the timestamp and the token, not the message: the token is the key against replays."""
    nested = fields.get("signature")
    signed = nested if isinstance(nested, dict) else fields
    timestamp, token = _text(signed, "timestamp"), _text(signed, "token")
    signature = _text(signed, "signature")
    if not (timestamp and token and signature):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "missing Mailgun signature: timestamp, token, signature"
        )
    if not _unix_time(timestamp) or abs(now - int(timestamp)) > EMAIL_SIGNATURE_MAX_AGE_S:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "stale Mailgun signature timestamp")
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid Mailgun signature")
    return token


@router.post(
    "/email/inbound",
    response_model=Accepted,
    responses={401: {"description": "no API key (when no signing key is configured)"},
               403: _DENIED, 422: {"description": "no sender address or no text"}},
)
async def email_inbound(request: Request, container: ContainerDep) -> Accepted:
    """An inbound email, Mailgun inbound-parse style (form, multipart or JSON): `from`/`sender`,
    `subject`, `stripped-text` (else `body-plain`), `Message-Id`, `In-Reply-To`, `References`.

    With `JOURNEY_EMAIL_SIGNING_KEY` set the Mailgun signature (`timestamp`, `token`,
    `signature`) is required, must be under 5 minutes old and is accepted once (a token seen
    before is a replay: 403); without it the request needs an API key with `messages:write`.
    The subject and thread ids are kept on the message for the reply's threading. A text longer
    than 4000 characters is cut to that (the message's `meta.email.truncated_from` keeps the
    original length)."""
    settings = container.settings
    _, fields = await _fields(request)
    key = settings.email_signing_key.get_secret_value()
    token = _check_mailgun_signature(fields, key, _now(container)) if key else None
    if token is None:
        check_api_key(request, "messages:write")
    name, address = parseaddr(_text(fields, "from", "sender"))
    if "@" not in address:
        name, address = parseaddr(_text(fields, "sender"))
    if "@" not in address:
        raise _invalid("no sender address: give 'from' or 'sender' as an email address")
    text = _text(fields, "stripped-text", "body-plain")
    if not text:
        raise _invalid("no text: 'stripped-text' and 'body-plain' are empty")
    message_id = _text(fields, "Message-Id")
    email: dict[str, Any] = {
        "subject": _text(fields, "subject"),
        "message_id": message_id or None,
        "in_reply_to": _text(fields, "In-Reply-To") or None,
        "references": _text(fields, "References").split(),
    }
    # a long email is cut rather than refused: refusing makes the provider retry for hours
    limit = min(settings.max_text_chars, MAX_TEXT)
    if len(text) > limit:
        text, email["truncated_from"] = text[:limit], len(text)
    inbound = inbound_request(
        channel="email", customer=CustomerRef(email=address, name=name or None),
        text=text, external_id=_external_id(message_id),
    )
    meta = {"email": email}
    if token is None:  # an API key's holder, not a signature: nothing to replay
        return await run_in_threadpool(container.orchestrator.accept, inbound, meta=meta)
    return await _accept_once(container, "mailgun", token, EMAIL_REPLAY_MEMORY_S, inbound, meta)


# --- generic webhook -----------------------------------------------------------------------


def _webhook_key(secret: str, header: str, raw: bytes) -> str:
    """The signature a valid ``header`` carries, in one canonical form (``t=<t>,v1=<ours>``):
    extra ``v1`` values, spaces or another order do not make a captured header new."""
    signed_at = ""
    for part in header.split(","):  # as webhook_signature_problem reads it: the last t
        name, _, value = part.strip().partition("=")
        if name == "t":
            signed_at = value
    return sign_webhook(secret, raw, int(signed_at))


@router.post(
    "/webhook/inbound",
    response_model=Accepted,
    responses={403: _DENIED, 503: _UNCONFIGURED},
)
async def webhook_inbound(request: Request, container: ContainerDep) -> Accepted:
    """A message from any channel, as JSON `{channel, customer: {...}, text, external_id}`,
    signed with `JOURNEY_WEBHOOK_SECRET`: `X-Journey-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
    "<t>.<raw body>">`, at most 5 minutes old and accepted once (a signature used before is a
    replay: 403)."""
    secret = container.settings.webhook_secret.get_secret_value()
    if not secret:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the generic webhook is not configured: set JOURNEY_WEBHOOK_SECRET",
        )
    raw = await request.body()
    header = request.headers.get(SIGNATURE_HEADER) or ""
    problem = webhook_signature_problem(secret, header, raw, _now(container))
    if problem:
        raise HTTPException(status.HTTP_403_FORBIDDEN, problem)
    try:
        inbound = InboundRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid(_errors(exc)) from exc
    key = _webhook_key(secret, header, raw)
    return await _accept_once(container, "webhook", key, WEBHOOK_REPLAY_MEMORY_S, inbound)
