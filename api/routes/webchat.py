"""The browser chat widget's API: no API key (a web page cannot keep one secret), a signed
session instead (:mod:`channels.webchat`).

1. ``POST /v1/webchat/sessions`` → ``{session_id, token}`` (the token expires
   ``webchat_session_ttl_s`` after it was issued: then the widget starts a new session);
2. ``POST /v1/webchat/{session_id}/messages`` with ``X-Session-Token`` → 202, the turn is queued;
3. ``GET /v1/webchat/{session_id}/stream?token=...`` → Server-Sent Events, one ``message`` event
   per reply (``id`` = the message id, so a reconnecting ``EventSource`` resumes after the last
   one it saw through ``Last-Event-ID``).

The stream wakes at once when this process delivers a reply (``Hub``), and polls the database
every 2 s for replies sent by other processes (a separate ``journey worker``).

Anonymous sessions and messages are rate limited per client address (``429`` with
``Retry-After``); a signed-in session is started by your backend with its API key, and counts
against that key's limit instead.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import (
    CallerDep,
    HubDep,
    LifecycleDep,
    PolicyDep,
    SettingsDep,
    StoreDep,
    TurnsDep,
    check_api_key,
)
from api.ratelimit import LIMITED
from api.routes.channels import inbound_request
from channels.webchat import check_session_token, new_session_id, session_key, session_token
from core.domain import Identity, Message
from core.hub import Hub
from core.identity import EmailAddress, PhoneNumber
from core.settings import Settings
from journey.turns import Accepted, CustomerRef
from memory.store import Store
from policy.privacy import mask

router = APIRouter(prefix="/v1/webchat", tags=["webchat"])

#: how often a stream checks for a wake-up, polls the database, sends a keep-alive comment
TICK_S = 0.2
POLL_S = 2.0
KEEPALIVE_S = 15.0
#: a stream ends after this long and the browser's EventSource reconnects (Last-Event-ID), so
#: no connection outlives a server shutdown by more than this
STREAM_MAX_S = 300.0
#: what EventSource waits before reconnecting, in ms
RETRY_MS = 2000

SessionId = Annotated[
    str, Path(pattern=r"^wc_[A-Za-z0-9_-]{8,64}$", description="From POST /v1/webchat/sessions")
]
_DENIED: dict[int | str, dict[str, Any]] = {
    403: {"description": "wrong or missing session token, or the session expired"}
}


class SessionRequest(BaseModel):
    """Optional details from a pre-chat form."""

    name: str | None = Field(None, max_length=200)
    #: Unverified: kept as the profile attribute ``unverified_email``, never used as an
    #: identity, so typing someone else's address cannot attach this chat to their profile.
    email: EmailAddress | None = Field(None, max_length=320)
    #: Verified identities: the chat joins the customer's profile (their email, SMS and
    #: WhatsApp history). Needs an API key with ``messages:write``.
    signed_in: SignedIn | None = None


class SignedIn(BaseModel):
    """Who the visitor is, as your site knows after they signed in. Only your backend can say
    this: it needs an API key with ``messages:write``."""

    email: EmailAddress | None = Field(None, max_length=320)
    phone: PhoneNumber | None = Field(None, max_length=40)
    crm_id: str | None = Field(None, min_length=1, max_length=200)


class Session(BaseModel):
    session_id: str
    token: str = Field(description="Send as X-Session-Token, or ?token= on the stream.")


class ChatMessage(BaseModel):
    text: str = Field(min_length=1, max_length=4000)
    client_message_id: str | None = Field(
        None, min_length=1, max_length=100,
        description="The widget's id for this message: a resend with the same id is stored once.",
    )


def _authorize(settings: Settings, store: Store, session_id: str, token: str | None) -> None:
    found = check_session_token(
        session_key(settings), session_id, token,
        now=store.clock.now(), ttl_s=settings.webchat_session_ttl_s,
    )
    if found == "expired":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "session expired: start a new session")
    if found != "valid":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong or missing session token")


@router.post("/sessions", response_model=Session, status_code=status.HTTP_201_CREATED,
             responses=LIMITED)
def create_session(
    request: Request, settings: SettingsDep, store: StoreDep, policy: PolicyDep,
    lifecycle: LifecycleDep, caller: CallerDep, body: SessionRequest | None = None,
) -> Session:
    """Start a chat session. With a name or email, the profile is created now; otherwise on the
    first message. With ``signed_in`` (from your backend, with an API key), the chat belongs to
    that customer's profile from the start."""
    if body is None or body.signed_in is None:
        caller.hit("webchat_sessions")  # anonymous: limited per address
    session_id = new_session_id()
    privacy = policy.get().privacy  # a card number typed as a name is not kept
    if body is not None and body.signed_in is not None:
        check_api_key(request, "messages:write")  # limited per key, not per address
        who = body.signed_in
        if not (who.email or who.phone or who.crm_id):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                                "signed_in: give an email, phone or crm_id")
        ref = CustomerRef(web_chat_id=session_id, email=who.email, phone=who.phone,
                          crm_id=who.crm_id)
        profile, _ = store.resolve_customer(
            ref.identities(), lifecycle.default_stage, timezone="", stages=lifecycle.stages,
            on_erased="recreate",  # the person themselves, signed in
        )
        if body.name and not profile.name:
            store.update_customer(profile.id, name=mask(body.name, privacy))
    elif body is not None and (body.name or body.email):
        attributes = {"unverified_email": mask(body.email.strip(), privacy)} if body.email \
            else {}
        store.create_customer(
            [Identity(kind="web_chat_id", value=session_id)], lifecycle.default_stage,
            name=mask(body.name, privacy) if body.name else None, timezone="",
            attributes=attributes,
        )
    return Session(
        session_id=session_id,
        token=session_token(session_key(settings), session_id, store.clock.now()),
    )


@router.post(
    "/{session_id}/messages",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=_DENIED | LIMITED,
)
def post_message(
    session_id: SessionId,
    body: ChatMessage,
    settings: SettingsDep,
    store: StoreDep,
    turns: TurnsDep,
    hub: HubDep,
    caller: CallerDep,
    x_session_token: Annotated[str | None, Header()] = None,
) -> Accepted:
    """Send the customer's message; the reply arrives on the stream."""
    caller.hit("webchat_messages")  # each may cost a model call
    _authorize(settings, store, session_id, x_session_token)
    # external ids are unique per channel: scope the widget's ids to the session
    external_id = f"{session_id}:{body.client_message_id or secrets.token_hex(8)}"
    inbound = inbound_request(
        channel="web_chat", customer=CustomerRef(web_chat_id=session_id), text=body.text,
        external_id=external_id,
    )
    accepted = turns.accept(inbound)
    hub.notify(f"webchat:{session_id}")  # a waiting stream learns the customer now
    return accepted


def _event(message: Message) -> str:
    data = {"id": message.id, "text": message.text, "author": message.author,
            "created_at": message.created_at.isoformat()}
    return f"event: message\nid: {message.id}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _fetch(store: Store, session_id: str, after: str | None) -> tuple[str | None, list[Message]]:
    """(customer id, replies after ``after``); (None, []) before the first message."""
    profile = store.find_customer(Identity(kind="web_chat_id", value=session_id))
    if profile is None:
        return None, []
    found: list[Message] = []
    while True:
        page = store.outbound_since(profile.id, "web_chat", after, limit=100)
        found += page
        if len(page) < 100:
            return profile.id, found
        after = page[-1].id


async def _events(
    store: Store, hub: Hub, session_id: str, last_id: str | None
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    started = last_poll = last_write = loop.time()
    customer_id: str | None = None
    seen: tuple[int, int] | None = None
    yield f"retry: {RETRY_MS}\n\n"
    while loop.time() - started < STREAM_MAX_S:
        # read the versions before the database, so a reply landing in between wakes us again
        versions = (hub.version(f"webchat:{session_id}"),
                    hub.version(f"customer:{customer_id}") if customer_id else 0)
        now = loop.time()
        if versions != seen or now - last_poll >= POLL_S:
            seen, last_poll = versions, now
            customer_id, messages = await anyio.to_thread.run_sync(
                _fetch, store, session_id, last_id
            )
            for message in messages:
                yield _event(message)
                last_id, last_write = message.id, loop.time()
        if loop.time() - last_write >= KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_write = loop.time()
        await asyncio.sleep(TICK_S)


@router.get(
    "/{session_id}/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **_DENIED},
)
async def stream(
    session_id: SessionId,
    settings: SettingsDep,
    store: StoreDep,
    hub: HubDep,
    token: Annotated[str | None, Query(description="The session token (EventSource "
                                                   "cannot send headers).")] = None,
    x_session_token: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-Sent Events: every reply to this session as `event: message` with `id` and JSON
    `data` {id, text, author, created_at}; first the replies after `Last-Event-ID` (all of
    them without it), then each new one as it is delivered; `: keep-alive` every 15 s."""
    _authorize(settings, store, session_id, token or x_session_token)
    return StreamingResponse(
        _events(store, hub, session_id, last_event_id or None),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
