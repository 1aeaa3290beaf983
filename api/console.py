"""The web console for the people working the handoff inbox, and the customer chat page.

Server-rendered Jinja2 (``api/templates``) with htmx for the live parts; every asset is served
from ``api/static`` (no CDN, no build step). The console calls the handoff service in-process.

Signing in: an agent posts their API key (one with an ``inbox`` scope) once. Failed attempts
are limited per client address (``JOURNEY_RATE_LIMIT_LOGIN``); over the limit the address gets
the form back with ``429`` and ``Retry-After``, whatever key it sends. The cookie never
holds the key: it is ``<sha256 of the key>.<issued at>.<HMAC>`` under the web-chat session
secret, HttpOnly, SameSite=Strict, valid 12 hours. Each request finds the key again by its hash
in the settings, so removing a key ends its sessions. Every POST carries a CSRF token derived
from the cookie (``X-CSRF-Token``, set by htmx from ``<body hx-headers>``, or a ``csrf_token``
form field); without it the answer is 403.

Pages: ``/console`` (inbox), ``/console/handoffs/{id}`` (conversation), ``/console/metrics``,
``/console/login``, and ``/chat`` (the customer's web chat, for demos).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote

import jinja2
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.deps import CallerDep, ContainerDep, agent_for_key
from api.ratelimit import RateLimited
from channels.webchat import session_key
from core.clock import aware
from core.domain import Decision, Message
from core.settings import Settings
from journey.handoffs import (
    Agent,
    HandoffError,
    HandoffPacket,
    HandoffView,
    human_duration,
)
from journey.runtime import Container

COOKIE = "journey_console"
SESSION_MAX_S = 12 * 3600
MAX_FORM_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4000
HERE = Path(__file__).parent
LOGIN = "/console/login"

StatusFilter = Literal["active", "open", "claimed", "resolved", "returned", "all"]
STATUSES: tuple[StatusFilter, ...] = ("active", "open", "claimed", "resolved", "returned", "all")

#: Everything is same-origin; no inline script or style (htmx is told not to inject its own).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """No valid console session: the browser is sent to the login page."""


@dataclass(frozen=True)
class ConsoleSession:
    agent: Agent
    csrf: str


# --- the session cookie ------------------------------------------------------------------------


def _key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _mac(settings: Settings, purpose: str, value: str) -> str:
    message = f"console-{purpose}:{value}".encode()
    return hmac.new(session_key(settings), message, hashlib.sha256).hexdigest()


def _known_key(settings: Settings, key_id: str) -> str | None:
    """The configured API key whose hash is ``key_id`` (constant time per key)."""
    found = None
    for key in settings.api_keys:
        if hmac.compare_digest(_key_id(key).encode(), key_id.encode()):
            found = key
    return found


def session_cookie(settings: Settings, key: str, now: datetime) -> str:
    payload = f"{_key_id(key)}.{int(now.timestamp())}"
    return f"{payload}.{_mac(settings, 'session', payload)}"


def read_session(settings: Settings, cookie: str | None, now: datetime) -> ConsoleSession | None:
    """The session a cookie stands for; None if it is forged, expired or its key is gone."""
    if not cookie or not cookie.isascii():
        return None
    payload, _, mac = cookie.rpartition(".")
    if not hmac.compare_digest(_mac(settings, "session", payload).encode(), mac.encode()):
        return None
    key_id, _, issued = payload.partition(".")
    if not issued.isdigit() or not 0 <= now.timestamp() - int(issued) < SESSION_MAX_S:
        return None
    key = _known_key(settings, key_id)
    agent = agent_for_key(settings, key) if key else None
    if agent is None:
        return None
    return ConsoleSession(agent=agent, csrf=_mac(settings, "csrf", cookie))


# --- dependencies ------------------------------------------------------------------------------


def get_templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.console_templates
    return templates


TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]


def console_session(request: Request, container: ContainerDep) -> ConsoleSession:
    session = read_session(
        container.settings, request.cookies.get(COOKIE), container.store.clock.now()
    )
    if session is None:
        raise LoginRequired
    return session


SessionDep = Annotated[ConsoleSession, Depends(console_session)]


async def form_fields(request: Request) -> dict[str, str]:
    """An url-encoded form body (what browsers and htmx send); other bodies give no fields."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


FormDep = Annotated[dict[str, str], Depends(form_fields)]


def checked_session(request: Request, session: SessionDep, form: FormDep) -> ConsoleSession:
    """The session of a POST that carries its CSRF token; 403 otherwise."""
    token = request.headers.get("X-CSRF-Token") or form.get("csrf_token", "")
    if not hmac.compare_digest(token.encode(), session.csrf.encode()):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return session


PostSessionDep = Annotated[ConsoleSession, Depends(checked_session)]


# --- rendering ---------------------------------------------------------------------------------


def _page(
    request: Request, templates: Jinja2Templates, name: str, context: dict[str, Any],
    status_code: int = 200, headers: dict[str, str] | None = None,
) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    response.headers.update(headers or {})
    return response


def _is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def age(since: datetime, now: datetime) -> str:
    """How long ago ``since`` was: ``45s``, ``12m``, ``3h 5m`` (a naive time is UTC)."""
    return human_duration(max(0.0, (now - (aware(since) or now)).total_seconds()))


def author_label(message: Message, customer: str | None = None) -> str:
    if message.author.startswith("human:"):
        return message.author.removeprefix("human:")
    if message.author == "bot":
        return "Bot"
    return customer or "Customer"


def author_kind(message: Message) -> str:
    """``customer``, ``bot`` or ``human``: the transcript's CSS class."""
    return "human" if message.author.startswith("human:") else message.author


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        age=age, seconds=lambda s: human_duration(s or 0.0), author_label=author_label,
        author_kind=author_kind,
    )
    return env


def _base(request: Request, container: Container, session: ConsoleSession | None
          ) -> dict[str, Any]:
    return {
        "request": request,
        "agent": session.agent if session else None,
        "csrf": session.csrf if session else "",
        "company": container.knowledge.company,
        "now": container.store.clock.now(),
    }


# --- the customer's chat page ------------------------------------------------------------------


@router.get("/chat", response_class=HTMLResponse)
def chat_page(request: Request, container: ContainerDep, templates: TemplatesDep,
              ) -> HTMLResponse:
    """The customer's web chat (demo): a session, the reply stream, a message box."""
    return _page(request, templates, "chat.html", {"company": container.knowledge.company})


# --- sign in and out ---------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a console path: never another site (``//evil``, ``/\\evil``)."""
    if target and target.startswith("/console") and "\\" not in target:
        return target
    return "/console"


@router.get(LOGIN, response_class=HTMLResponse)
def login_form(
    request: Request, container: ContainerDep, templates: TemplatesDep,
    next_: Annotated[str, Query(alias="next", max_length=500)] = "/console",
) -> HTMLResponse:
    context = _base(request, container, None) | {"next": _safe_next(next_), "error": None}
    return _page(request, templates, "console/login.html", context)


@router.post(LOGIN, response_class=HTMLResponse)
def login(request: Request, container: ContainerDep, templates: TemplatesDep, form: FormDep,
          caller: CallerDep) -> Response:
    settings = container.settings
    key = form.get("key", "").strip()
    target = _safe_next(form.get("next"))
    known = _known_key(settings, _key_id(key)) if key else None
    agent = agent_for_key(settings, known) if known else None
    try:
        caller.limiter.check("login", caller.address)  # a blocked address learns nothing
        if agent is None:
            caller.hit("login")  # only failed attempts count
    except RateLimited as exc:
        context = _base(request, container, None) | {"next": target, "error": exc.detail}
        return _page(request, templates, "console/login.html", context, 429,
                     headers={"Retry-After": str(exc.retry_after)})
    if agent is None:
        error, status_code = (
            ("This API key has no inbox scope: it needs 'inbox' or 'inbox:<queue>'.", 403)
            if known else ("Unknown API key.", 401)
        )
        context = _base(request, container, None) | {"next": target, "error": error}
        return _page(request, templates, "console/login.html", context, status_code)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE, session_cookie(settings, key, container.store.clock.now()),
        max_age=SESSION_MAX_S, path="/console", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/console/logout")
def logout(_session: PostSessionDep) -> Response:
    response = RedirectResponse(LOGIN, status_code=303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return response


# --- the inbox ---------------------------------------------------------------------------------


def _inbox_context(
    container: Container, agent: Agent, queue: str | None, status: StatusFilter
) -> dict[str, Any]:
    service = container.handoffs
    handoffs: list[HandoffView] = []
    error = None
    try:
        handoffs = service.list(
            agent, queue=queue or None, status=None if status == "all" else status
        )
    except HandoffError as exc:
        error = exc.detail
    return {
        "handoffs": handoffs,
        "error": error,
        "queue": queue or "",
        "status": status,
        "queues": [q for q in service.queues() if agent.covers(q)],
        "statuses": STATUSES,
    }


QueueQuery = Annotated[str | None, Query(max_length=60)]
StatusQuery = Annotated[str | None, Query(max_length=20)]


def _status(value: str | None) -> StatusFilter:
    """A page, not an API: an empty or unknown filter shows the active handoffs."""
    return next((s for s in STATUSES if s == value), "active")


@router.get("/console", response_class=HTMLResponse)
def inbox(
    request: Request, container: ContainerDep, session: SessionDep, templates: TemplatesDep,
    queue: QueueQuery = None, status: StatusQuery = None,
) -> HTMLResponse:
    """The inbox: the handoffs in the agent's queues, filtered, refreshed every 2 s."""
    context = _base(request, container, session) | _inbox_context(
        container, session.agent, queue, _status(status))
    return _page(request, templates, "console/inbox.html", context)


@router.get("/console/inbox", response_class=HTMLResponse)
def inbox_rows(
    request: Request, container: ContainerDep, session: SessionDep, templates: TemplatesDep,
    queue: QueueQuery = None, status: StatusQuery = None,
) -> HTMLResponse:
    """The inbox table alone (htmx polls it)."""
    context = _base(request, container, session) | _inbox_context(
        container, session.agent, queue, _status(status))
    return _page(request, templates, "console/_inbox_table.html", context)


# --- a conversation ----------------------------------------------------------------------------


def _packet_context(packet: HandoffPacket) -> dict[str, Any]:
    by_message: dict[str, Decision] = {}
    for decision in packet.decisions:
        if decision.inbound_message_id:
            by_message.setdefault(decision.inbound_message_id, decision)
    return {"packet": packet, "handoff": packet.handoff, "decision_for": by_message}


def _actions_context(
    container: Container, agent: Agent, handoff: HandoffView, *,
    error: str | None = None, notice: str | None = None, drafts: dict[str, str] | None = None,
) -> dict[str, Any]:
    mine = handoff.status == "claimed" and handoff.assignee == agent.name
    active = handoff.status in ("open", "claimed")
    return {
        "handoff": handoff,
        "can_claim": handoff.status == "open",
        "can_reply": mine,
        "can_resolve": mine,
        "can_return": active and (handoff.status == "open" or mine),
        "can_note": active,
        "outcomes": container.handoffs.outcomes(),
        "error": error,
        "notice": notice,
        # what the agent typed, kept when the change failed
        "drafts": drafts or {},
        # a resent form (double click, retry) posts the same key: one reply, one note
        "idempotency_key": secrets.token_urlsafe(12),
    }


def _error_page(request: Request, container: Container, templates: Jinja2Templates,
                session: ConsoleSession, exc: HandoffError) -> HTMLResponse:
    context = _base(request, container, session) | {"message": exc.detail}
    return _page(request, templates, "console/error.html", context, exc.status_code)


@router.get("/console/handoffs/{handoff_id}", response_class=HTMLResponse)
def conversation(
    handoff_id: str, request: Request, container: ContainerDep, session: SessionDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """One handoff: profile, packet, cross-channel transcript, decision trace, the actions."""
    try:
        packet = container.handoffs.packet(session.agent, handoff_id)
    except HandoffError as exc:
        return _error_page(request, container, templates, session, exc)
    context = (_base(request, container, session) | _packet_context(packet)
               | _actions_context(container, session.agent, packet.handoff))
    return _page(request, templates, "console/conversation.html", context)


@router.get("/console/handoffs/{handoff_id}/live", response_class=HTMLResponse)
def conversation_live(
    handoff_id: str, request: Request, container: ContainerDep, session: SessionDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """The parts of a conversation that change (htmx polls them): the status, the
    transcript, the events and the decision trace."""
    try:
        packet = container.handoffs.packet(session.agent, handoff_id)
    except HandoffError as exc:
        context = _base(request, container, session) | {"message": exc.detail}
        return _page(request, templates, "console/_gone.html", context)
    context = _base(request, container, session) | _packet_context(packet)
    return _page(request, templates, "console/_live.html", context)


def _act(
    request: Request, container: Container, templates: Jinja2Templates,
    session: ConsoleSession, handoff_id: str, run: Callable[[], object], done: str,
    drafts: dict[str, str] | None = None,
) -> Response:
    """Run one state change; answer htmx with the actions panel (the error inline, with its
    status), a plain form post with a redirect back to the conversation."""
    agent = session.agent
    error: HandoffError | None = None
    try:
        run()
    except HandoffError as exc:
        error = exc
    if not _is_htmx(request):
        if error is None:
            return RedirectResponse(f"/console/handoffs/{quote(handoff_id)}", status_code=303)
        return _error_page(request, container, templates, session, error)
    try:
        handoff = container.handoffs.view(agent, handoff_id)
    except HandoffError as exc:
        context = _base(request, container, session) | {"message": exc.detail}
        return _page(request, templates, "console/_gone.html", context, exc.status_code)
    context = _base(request, container, session) | _actions_context(
        container, agent, handoff,
        error=error.detail if error else None, notice=None if error else done,
        drafts=drafts if error else None,
    )
    return _page(
        request, templates, "console/_actions.html", context,
        status_code=error.status_code if error else 200,
        # the live parts refresh at once instead of on the next poll
        headers={} if error else {"HX-Trigger": "console-changed"},
    )


class _FormError(HandoffError):
    """A form field the console refuses before asking the service."""

    status_code = 422


def _text(form: dict[str, str], field: str) -> str:
    text = form.get(field, "").strip()
    if len(text) > MAX_TEXT_CHARS:
        raise _FormError(f"at most {MAX_TEXT_CHARS} characters, please")
    return text


@router.post("/console/handoffs/{handoff_id}/claim")
def claim(handoff_id: str, request: Request, container: ContainerDep,
          session: PostSessionDep, templates: TemplatesDep) -> Response:
    return _act(request, container, templates, session, handoff_id,
                lambda: container.handoffs.claim(session.agent, handoff_id),
                "Claimed: the conversation is yours.")


@router.post("/console/handoffs/{handoff_id}/reply")
def reply(handoff_id: str, request: Request, container: ContainerDep, session: PostSessionDep,
          templates: TemplatesDep, form: FormDep) -> Response:
    def run() -> object:
        text = _text(form, "text")
        if not text:
            raise _FormError("write a reply first")
        return container.handoffs.reply(session.agent, handoff_id, text,
                                        idempotency_key=form.get("idempotency_key") or None)

    return _act(request, container, templates, session, handoff_id, run,
                "Sent to the customer.", drafts={"reply": form.get("text", "")})


@router.post("/console/handoffs/{handoff_id}/note")
def note(handoff_id: str, request: Request, container: ContainerDep, session: PostSessionDep,
         templates: TemplatesDep, form: FormDep) -> Response:
    def run() -> object:
        text = _text(form, "text")
        if not text:
            raise _FormError("write the note first")
        return container.handoffs.note(session.agent, handoff_id, text,
                                       idempotency_key=form.get("idempotency_key") or None)

    return _act(request, container, templates, session, handoff_id, run, "Note added.",
                drafts={"note": form.get("text", "")})


@router.post("/console/handoffs/{handoff_id}/resolve")
def resolve(handoff_id: str, request: Request, container: ContainerDep,
            session: PostSessionDep, templates: TemplatesDep, form: FormDep) -> Response:
    def run() -> object:
        outcome = form.get("outcome", "")
        if outcome not in container.handoffs.outcomes():
            raise _FormError("choose an outcome")
        return container.handoffs.resolve(session.agent, handoff_id, outcome,
                                          note=_text(form, "note") or None)

    return _act(request, container, templates, session, handoff_id, run, "Resolved.")


@router.post("/console/handoffs/{handoff_id}/return")
def return_to_bot(handoff_id: str, request: Request, container: ContainerDep,
                  session: PostSessionDep, templates: TemplatesDep, form: FormDep) -> Response:
    return _act(request, container, templates, session, handoff_id,
                lambda: container.handoffs.return_to_bot(
                    session.agent, handoff_id, note=_text(form, "note") or None),
                "Returned to the bot: it answers the customer's next message.")


# --- metrics -----------------------------------------------------------------------------------


@router.get("/console/metrics", response_class=HTMLResponse)
def metrics(request: Request, container: ContainerDep, session: SessionDep,
            templates: TemplatesDep) -> HTMLResponse:
    """Handoff outcomes per queue: time to claim and to resolve, human vs returned."""
    agent = session.agent
    found = container.handoffs.metrics(agent)  # only the queues the agent's key covers
    context = _base(request, container, session) | {
        "metrics": found,
        # the total of the agent's queues; for one queue it would repeat that queue's row
        "rows": found.queues + ([found.total] if agent.queues is None or len(agent.queues) > 1
                                else []),
    }
    return _page(request, templates, "console/metrics.html", context)


# --- wiring ------------------------------------------------------------------------------------


async def _to_login(request: Request, exc: Exception) -> Response:
    if _is_htmx(request):  # htmx follows HX-Redirect with a full page load
        return Response(status_code=401, headers={"HX-Redirect": LOGIN})
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{LOGIN}?next={quote(target, safe='')}", status_code=303)


def install(app: FastAPI) -> None:
    """Serve the console, the chat page and their static assets from ``app``."""
    app.state.console_templates = Jinja2Templates(env=_environment())
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(LoginRequired, _to_login)
