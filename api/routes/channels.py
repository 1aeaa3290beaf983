"""Provider webhooks: inbound SMS/WhatsApp (Twilio), inbound email (Mailgun-style), a generic
signed webhook, and Twilio's delivery-status callbacks.

Each request is authenticated before anything is stored: a missing or wrong signature is a 403
and the database is untouched. A signature is used once: a signed Mailgun or generic webhook
whose signature was already accepted is a replay, a 403 before anything is stored
(:class:`memory.replay.ReplayGuard`, shared by every process through the database). An
accepted message is stored and its turn queued (``Orchestrator.accept``); the reply leaves
later through the outbox, never in the webhook's answer, so a provider that delivers the same
message again (the same message id under a new signature, or Twilio's same MessageSid) gets the
first result and nothing is sent twice. Bodies are read raw (signatures cover the exact bytes);
the provider's module in ``channels`` checks its signature and reads its fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import SettingsDep, StoreDep, TurnsDep, check_api_key
from api.forms import multipart_fields
from channels import mailgun, twilio, webhook
from channels.base import InboundError, NotConfigured, SignatureError, form_fields, json_fields
from core.settings import Settings
from journey.turns import Accepted, InboundRequest, Orchestrator
from memory.replay import ReplayGuard
from memory.store import Store

router = APIRouter(prefix="/v1/channels", tags=["channels"])

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
#: An accepted signature is remembered for its window on both sides of its timestamp, so it is
#: refused as long as it could pass as fresh (another process's clock may differ a little).
EMAIL_REPLAY_MEMORY_S = 2 * mailgun.SIGNATURE_MAX_AGE_S
WEBHOOK_REPLAY_MEMORY_S = 2 * webhook.TOLERANCE_S
REPLAYED = "this signature was already used: a replay is refused"
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


@contextmanager
def _refusals() -> Iterator[None]:
    """A channel module's refusal as our answer, with its detail: a provider not configured is a
    503, not the provider's request (a bad signature) a 403, fields that make no message a 422."""
    try:
        yield
    except NotConfigured as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    except SignatureError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except InboundError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


def inbound_request(**fields: Any) -> InboundRequest:
    """An InboundRequest, or a 422 naming what is wrong."""
    try:
        return InboundRequest(**fields)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _errors(exc)) from exc


def _errors(exc: ValidationError) -> str:
    """Each error as ``<field>: <what is wrong>``, joined by ``; ``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


async def _fields(request: Request) -> dict[str, Any]:
    """The body's fields: a form, a multipart form or a JSON object (422 for bad JSON)."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        parts: dict[str, Any] = {}
        for name, text in multipart_fields(content_type, raw):
            parts.setdefault(name, text)
        return parts
    with _refusals():
        return json_fields(raw) if kind == "application/json" else form_fields(raw)


async def _accept_once(
    store: Store, turns: Orchestrator, source: str, key: str, memory_s: float,
    inbound: InboundRequest, meta: dict[str, Any] | None = None,
) -> Accepted:
    """Store ``inbound`` if its signature ``key`` was never used (403 otherwise, nothing stored).

    The key is recorded (and committed) first. If storing then fails, the key is released so
    the provider's retry of this request is accepted. A process killed between the two steps
    leaves the key recorded and nothing stored: the provider's retries with that signature are
    refused until it expires (a new delivery with a new signature is accepted). A failure after
    the message was stored but before its turn was queued releases the key too: for Mailgun,
    whose signature does not cover the body, the token is then usable once more in its window."""
    guard = ReplayGuard(store.engine, store.clock)
    until = store.clock.now() + timedelta(seconds=memory_s)
    if not await run_in_threadpool(guard.first_use, source, key, until):
        raise HTTPException(status.HTTP_403_FORBIDDEN, REPLAYED)
    try:
        return await run_in_threadpool(turns.accept, inbound, meta=meta)
    except Exception:
        await run_in_threadpool(guard.release, source, key)
        raise


# --- Twilio --------------------------------------------------------------------------------
#
# No replay table for Twilio: its signature covers the URL and every form field, so a replay
# cannot change the sender, the text or anything else; and an identical replay carries the same
# MessageSid, the message's external id, which stores it once (``duplicate``). Twilio's own
# retries are deduplicated the same way.
async def _twilio_fields(request: Request, settings: Settings) -> dict[str, Any]:
    """The form fields of a request Twilio signed; 503/403 otherwise, before any side effect."""
    with _refusals():
        token = twilio.inbound_auth_token(settings)
        fields = await _fields(request)
        url = twilio.signed_url(settings.public_url, str(request.url))
        signature = request.headers.get("x-twilio-signature")
        twilio.verify_twilio_request(token, url, fields, signature)
    return fields


@router.post(
    "/twilio/inbound",
    response_class=Response,
    responses={200: _TWIML, 403: _DENIED, 422: {"description": "no From or MessageSid"},
               503: _UNCONFIGURED},
)
async def twilio_inbound(request: Request, settings: SettingsDep, turns: TurnsDep) -> Response:
    """An SMS or WhatsApp message (Twilio's messaging webhook, form-encoded, signed).

    `From` with a `whatsapp:` prefix is WhatsApp, else SMS; `MessageSid` deduplicates Twilio's
    retries. Answers an empty TwiML document: the reply goes out through the outbox. A message
    without text (media only) is acknowledged and not stored: the agent reads text."""
    fields = await _twilio_fields(request, settings)
    with _refusals():
        message = twilio.parse_twilio_message(fields)
    if message.text:
        inbound = inbound_request(
            channel=message.channel, text=message.text, external_id=message.external_id,
            customer={"phone": message.address, "name": message.name},
        )
        await run_in_threadpool(turns.accept, inbound, meta=message.meta)
    return Response(EMPTY_TWIML, media_type="text/xml")


@router.post(
    "/twilio/status",
    response_model=StatusRecorded,
    responses={403: _DENIED, 422: {"description": "no MessageSid or MessageStatus"},
               503: _UNCONFIGURED},
)
async def twilio_status(request: Request, settings: SettingsDep, store: StoreDep) -> StatusRecorded:
    """Twilio's delivery-status callback (`StatusCallback` of each message we send): records
    `MessageStatus` (and `ErrorCode`) on the outbox row. An unknown sid is still a 200 (a retry
    cannot help) with `updated: false`."""
    fields = await _twilio_fields(request, settings)
    with _refusals():
        callback = twilio.parse_twilio_status(fields)
    sid, record = callback.provider_message_id, store.outbox_queue.record_delivery_status
    updated = await run_in_threadpool(record, sid, callback.status, callback.error)
    detail = "recorded" if updated else f"no outbound message has the sid {sid}; ignored"
    return StatusRecorded(message_sid=sid, status=callback.status, updated=updated, detail=detail)


# --- email -----------------------------------------------------------------------------------
@router.post(
    "/email/inbound",
    response_model=Accepted,
    responses={401: {"description": "no API key (when no signing key is configured)"},
               403: _DENIED, 422: {"description": "no sender address or no text"}},
)
async def email_inbound(
    request: Request, settings: SettingsDep, store: StoreDep, turns: TurnsDep
) -> Accepted:
    """An inbound email, Mailgun inbound-parse style (form, multipart or JSON): `from`/`sender`,
    `subject`, `stripped-text` (else `body-plain`), `Message-Id`, `In-Reply-To`, `References`.

    With `JOURNEY_EMAIL_SIGNING_KEY` set the Mailgun signature (`timestamp`, `token`,
    `signature`) is required, must be under 5 minutes old and is accepted once (a token seen
    before is a replay: 403); without it the request needs an API key with `messages:write`.
    The subject and thread ids are kept on the message for the reply's threading. A text longer
    than 4000 characters is cut to that (the message's `meta.email.truncated_from` keeps the
    original length)."""
    fields = await _fields(request)
    key = settings.email_signing_key.get_secret_value()
    with _refusals():
        token = None
        if key:
            token = mailgun.verify_mailgun(fields, key, store.clock.now().timestamp())
        else:
            check_api_key(request, "messages:write")
        message = mailgun.parse_mailgun_email(fields, min(settings.max_text_chars, MAX_TEXT))
    inbound = inbound_request(
        channel=message.channel, text=message.text, external_id=message.external_id,
        customer={"email": message.address, "name": message.name},
    )
    if token is None:  # an API key's holder, not a signature: nothing to replay
        return await run_in_threadpool(turns.accept, inbound, meta=message.meta)
    return await _accept_once(
        store, turns, "mailgun", token, EMAIL_REPLAY_MEMORY_S, inbound, message.meta
    )


# --- generic webhook -----------------------------------------------------------------------
@router.post(
    "/webhook/inbound",
    response_model=Accepted,
    responses={403: _DENIED, 503: _UNCONFIGURED},
)
async def webhook_inbound(
    request: Request, settings: SettingsDep, store: StoreDep, turns: TurnsDep
) -> Accepted:
    """A message from any channel, as JSON `{channel, customer: {...}, text, external_id}`,
    signed with `JOURNEY_WEBHOOK_SECRET`: `X-Journey-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
    "<t>.<raw body>">`, at most 5 minutes old and accepted once (a signature used before is a
    replay: 403)."""
    with _refusals():
        secret = webhook.inbound_secret(settings)
        raw = await request.body()
        header = request.headers.get(webhook.SIGNATURE_HEADER) or ""
        key = webhook.verify_inbound_webhook(secret, header, raw, store.clock.now().timestamp())
    try:
        inbound = InboundRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _errors(exc)) from exc
    return await _accept_once(store, turns, "webhook", key, WEBHOOK_REPLAY_MEMORY_S, inbound)
