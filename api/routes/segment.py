"""Segment's HTTP tracking API: ``/v1/identify``, ``/v1/track``, ``/v1/page``, ``/v1/screen``,
``/v1/group``, ``/v1/alias`` (one message each) and ``/v1/batch`` (many), so the Segment and
RudderStack SDKs (and Segment itself, as a webhook destination) can send here.

Authentication is Segment's: a write key (``JOURNEY_SEGMENT_WRITE_KEYS``) as the HTTP Basic
user with an empty password, or as ``writeKey`` in the body. Mapping: :mod:`journey.segment`.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import CallerDep, SegmentDep, SettingsDep
from api.ratelimit import key_id
from journey.segment_spec import MAX_BATCH, BatchResult, ItemResult, MessageType

router = APIRouter(prefix="/v1", tags=["segment"])

_UNAUTHORIZED = "send your write key as the HTTP Basic user (empty password) or as writeKey"


def _key_of(header: str | None, body: bytes) -> str | None:
    """The write key: the Basic user, else ``writeKey`` in a JSON body."""
    scheme, credentials = get_authorization_scheme_param(header)
    if scheme.lower() == "basic" and credentials:
        try:
            user = base64.b64decode(credentials, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            user = ""
        if user:
            return user
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return None
    key = parsed.get("writeKey") if isinstance(parsed, dict) else None
    return key if isinstance(key, str) and key else None


async def write_key_source(request: Request, settings: SettingsDep, caller: CallerDep) -> str:
    """``segment:<source>`` for the request's write key, within the key's rate limit; a missing
    or unknown key is a 401 (and counts against the client's address, as API keys do)."""
    key = _key_of(request.headers.get("authorization"), await request.body())
    caller.limiter.check("api_key_failures", caller.address)
    source = None
    for known, name in settings.segment_write_keys.items():
        if key is not None and secrets.compare_digest(known.encode(), key.encode()):
            source = name or "default"
    if key is None or source is None:
        caller.hit("api_key_failures")
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"{'unknown' if key else 'missing'} write key: {_UNAUTHORIZED}",
            headers={"WWW-Authenticate": 'Basic realm="segment"'},
        )
    caller.limiter.hit("api", key_id(key))
    return f"segment:{source}"


SourceDep = Annotated[str, Depends(write_key_source)]
MessageBody = Annotated[dict[str, Any], Body(examples=[{
    "userId": "shop-42", "event": "Order Completed", "properties": {"total": 99.5},
    "messageId": "c1b4d0b6-6a8e-4f2e-9a53-3f1f0b1f2c11", "timestamp": "2026-11-03T10:15:00Z",
}])]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or unknown write key"},
    422: {"description": "the message is invalid (the errors name its fields); nothing of it "
                         "was applied", "model": ItemResult},
}


def _rejected(result: BatchResult | ItemResult, detail: str) -> JSONResponse:
    return JSONResponse(status_code=422, content={
        "detail": detail, **result.model_dump(mode="json")})


def _single(kind: MessageType, doc: str) -> None:
    def post_message(body: MessageBody, source: SourceDep, segment: SegmentDep) -> Any:
        result = segment.ingest([body], by=source, kind=kind).results[0]
        if result.status == "rejected":
            return _rejected(result, "; ".join(result.errors))
        return result

    post_message.__name__ = f"segment_{kind}"
    router.add_api_route(f"/{kind}", post_message, methods=["POST"], response_model=ItemResult,
                         responses=_RESPONSES, summary=f"Segment {kind}", description=doc)


_single("identify", "Create or update the profile of `userId`/`anonymousId`: `traits.email` "
        "and `traits.phone` become identities, `name` (or `firstName` + `lastName`), "
        "`context.timezone` and `context.locale` the profile's, the other traits attributes. "
        "Consent in `context.messaging_subscriptions`, `context.consent.categoryPreferences` or "
        "`traits.unsubscribed` goes to the consent ledger (source `segment`, evidence the "
        "`messageId`). A `messageId` seen before changes nothing (`duplicate`).")
_single("track", "A behavioural event: `Order Completed` is stored as `order_completed` (the "
        "name kept in `properties.segment.event`); it may move the lifecycle stage and fire "
        "journeys. The `messageId` is the event's id: a repeat is a `duplicate`.")
_single("page", "A `page_view` event; `properties.page` is the page's `name` as a type "
        "(`Pricing` → `pricing`) or else its path (`/pricing` → `pricing`).")
_single("screen", "A `screen_view` event; `properties.screen` is the screen's name as a type.")
_single("group", "A `group` event with the `groupId` and its traits (the profile is not "
        "changed).")
_single("alias", "`previousId` (an anonymousId or an earlier userId) is `userId`: their two "
        "profiles are merged into the `userId`'s (recorded), or the id is added to the one "
        "profile there is.")


class BatchIn(BaseModel):
    """Segment's batch: up to 1,000 messages, each with its `type`."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    batch: list[Any] = Field(min_length=1, max_length=MAX_BATCH, examples=[[
        {"type": "identify", "userId": "shop-42", "traits": {"email": "dana@example.com"}},
        {"type": "page", "userId": "shop-42", "name": "Pricing"},
    ]])
    sent_at: datetime | None = Field(None, alias="sentAt",
                                     description="The client's clock when it sent the batch.")
    context: dict[str, Any] = Field(default_factory=dict,
                                    description="Context for every message that lacks it.")
    write_key: str | None = Field(None, alias="writeKey")

    @field_validator("sent_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a timezone (e.g. 2026-11-03T10:15:00Z)")
        return value


@router.post("/batch", response_model=BatchResult, responses={
    401: {"description": "missing or unknown write key"},
    422: {"description": "the batch is malformed, or every message in it was rejected",
          "model": BatchResult},
})
def segment_batch(body: BatchIn, source: SourceDep, segment: SegmentDep) -> Any:
    """Many messages of any type, each applied on its own and in order: a bad one is
    `rejected` with its reasons while the others are applied; a `messageId` seen before is a
    `duplicate` and changes nothing. `200` with a result per message (Segment's clients only
    read the status), `422` only when every message was rejected (the clients do not retry
    it). The body may be gzip-compressed (`Content-Encoding: gzip`)."""
    result = segment.ingest(body.batch, by=source, sent_at=body.sent_at, context=body.context)
    if result.accepted == 0 and result.duplicates == 0:
        return _rejected(result, "every message in the batch was rejected")
    return result
