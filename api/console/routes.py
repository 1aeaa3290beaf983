"""The console's pages and actions: the inbox, one handoff's conversation (claim, reply, note,
resolve, return to the bot), the metrics, and the customer's chat page.

Every page needs a console session (:mod:`api.console.session`); every action is a POST with
its CSRF token. The console calls the handoff service in-process; a domain refusal is shown as
a page, or inline in the actions panel, with the status the API would answer (``status_of``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.pages import Pages, PagesDep
from api.console.session import ConsoleSession, FormDep, PostSessionDep, SessionDep
from api.deps import HandoffsDep
from api.errors import status_of
from core.domain import Decision
from core.errors import DomainError, Invalid
from journey.handoffs import Agent, HandoffPacket, HandoffService, HandoffView

MAX_TEXT_CHARS = 4000

StatusFilter = Literal["active", "open", "claimed", "resolved", "returned", "all"]
STATUSES: tuple[StatusFilter, ...] = ("active", "open", "claimed", "resolved", "returned", "all")

router = APIRouter(include_in_schema=False)


# --- the customer's chat page ------------------------------------------------------------------


@router.get("/chat", response_class=HTMLResponse)
def chat_page(pages: PagesDep) -> HTMLResponse:
    """The customer's web chat (demo): a session, the reply stream, a message box."""
    return pages.render("chat.html", {"company": pages.knowledge.company})


# --- the inbox ---------------------------------------------------------------------------------


def _inbox_context(
    handoffs: HandoffService, agent: Agent, queue: str | None, status: StatusFilter
) -> dict[str, Any]:
    found: list[HandoffView] = []
    error = None
    try:
        found = handoffs.list(
            agent, queue=queue or None, status=None if status == "all" else status
        )
    except DomainError as exc:
        error = exc.detail
    return {
        "handoffs": found,
        "error": error,
        "queue": queue or "",
        "status": status,
        "queues": [q for q in handoffs.queues() if agent.covers(q)],
        "statuses": STATUSES,
    }


QueueQuery = Annotated[str | None, Query(max_length=60)]
StatusQuery = Annotated[str | None, Query(max_length=20)]


def _status(value: str | None) -> StatusFilter:
    """A page, not an API: an empty or unknown filter shows the active handoffs."""
    return next((s for s in STATUSES if s == value), "active")


@router.get("/console", response_class=HTMLResponse)
def inbox(
    handoffs: HandoffsDep, session: SessionDep, pages: PagesDep,
    queue: QueueQuery = None, status: StatusQuery = None,
) -> HTMLResponse:
    """The inbox: the handoffs in the agent's queues, filtered, refreshed every 2 s."""
    context = pages.context(session) | _inbox_context(
        handoffs, session.agent, queue, _status(status))
    return pages.render("console/inbox.html", context)


@router.get("/console/inbox", response_class=HTMLResponse)
def inbox_rows(
    handoffs: HandoffsDep, session: SessionDep, pages: PagesDep,
    queue: QueueQuery = None, status: StatusQuery = None,
) -> HTMLResponse:
    """The inbox table alone (htmx polls it)."""
    context = pages.context(session) | _inbox_context(
        handoffs, session.agent, queue, _status(status))
    return pages.render("console/_inbox_table.html", context)


# --- a conversation ----------------------------------------------------------------------------


def _packet_context(packet: HandoffPacket) -> dict[str, Any]:
    by_message: dict[str, Decision] = {}
    for decision in packet.decisions:
        if decision.inbound_message_id:
            by_message.setdefault(decision.inbound_message_id, decision)
    return {"packet": packet, "handoff": packet.handoff, "decision_for": by_message}


def _actions_context(
    handoffs: HandoffService, agent: Agent, handoff: HandoffView, *,
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
        "outcomes": handoffs.outcomes(),
        "error": error,
        "notice": notice,
        # what the agent typed, kept when the change failed
        "drafts": drafts or {},
        # a resent form (double click, retry) posts the same key: one reply, one note
        "idempotency_key": secrets.token_urlsafe(12),
    }


@router.get("/console/handoffs/{handoff_id}", response_class=HTMLResponse)
def conversation(
    handoff_id: str, handoffs: HandoffsDep, session: SessionDep, pages: PagesDep,
) -> HTMLResponse:
    """One handoff: profile, packet, cross-channel transcript, decision trace, the actions."""
    try:
        packet = handoffs.packet(session.agent, handoff_id)
    except DomainError as exc:
        return pages.error(session, exc)
    context = (pages.context(session) | _packet_context(packet)
               | _actions_context(handoffs, session.agent, packet.handoff))
    return pages.render("console/conversation.html", context)


@router.get("/console/handoffs/{handoff_id}/live", response_class=HTMLResponse)
def conversation_live(
    handoff_id: str, handoffs: HandoffsDep, session: SessionDep, pages: PagesDep,
) -> HTMLResponse:
    """The parts of a conversation that change (htmx polls them): the status, the
    transcript, the events and the decision trace."""
    try:
        packet = handoffs.packet(session.agent, handoff_id)
    except DomainError as exc:
        return pages.render("console/_gone.html", pages.context(session, message=exc.detail))
    return pages.render("console/_live.html", pages.context(session) | _packet_context(packet))


def _act(
    pages: Pages, handoffs: HandoffService, session: ConsoleSession, handoff_id: str,
    run: Callable[[], object], done: str, drafts: dict[str, str] | None = None,
) -> Response:
    """Run one state change; answer htmx with the actions panel (the error inline, with its
    status), a plain form post with a redirect back to the conversation."""
    agent = session.agent
    error: DomainError | None = None
    try:
        run()
    except DomainError as exc:
        error = exc
    if not pages.htmx:
        if error is None:
            return RedirectResponse(f"/console/handoffs/{quote(handoff_id)}", status_code=303)
        return pages.error(session, error)
    try:
        handoff = handoffs.view(agent, handoff_id)
    except DomainError as exc:
        return pages.error(session, exc, "console/_gone.html")
    context = pages.context(session) | _actions_context(
        handoffs, agent, handoff,
        error=error.detail if error else None, notice=None if error else done,
        drafts=drafts if error else None,
    )
    return pages.render(
        "console/_actions.html", context,
        status_code=status_of(error) if error else 200,
        # the live parts refresh at once instead of on the next poll
        headers={} if error else {"HX-Trigger": "console-changed"},
    )


class _FormError(Invalid):
    """A form field the console refuses before asking the service."""


def _text(form: dict[str, str], field: str) -> str:
    text = form.get(field, "").strip()
    if len(text) > MAX_TEXT_CHARS:
        raise _FormError(f"at most {MAX_TEXT_CHARS} characters, please")
    return text


@router.post("/console/handoffs/{handoff_id}/claim")
def claim(handoff_id: str, handoffs: HandoffsDep, session: PostSessionDep, pages: PagesDep,
          ) -> Response:
    return _act(pages, handoffs, session, handoff_id,
                lambda: handoffs.claim(session.agent, handoff_id),
                "Claimed: the conversation is yours.")


@router.post("/console/handoffs/{handoff_id}/reply")
def reply(handoff_id: str, handoffs: HandoffsDep, session: PostSessionDep, pages: PagesDep,
          form: FormDep) -> Response:
    def run() -> object:
        text = _text(form, "text")
        if not text:
            raise _FormError("write a reply first")
        return handoffs.reply(session.agent, handoff_id, text,
                              idempotency_key=form.get("idempotency_key") or None)

    return _act(pages, handoffs, session, handoff_id, run,
                "Sent to the customer.", drafts={"reply": form.get("text", "")})


@router.post("/console/handoffs/{handoff_id}/note")
def note(handoff_id: str, handoffs: HandoffsDep, session: PostSessionDep, pages: PagesDep,
         form: FormDep) -> Response:
    def run() -> object:
        text = _text(form, "text")
        if not text:
            raise _FormError("write the note first")
        return handoffs.note(session.agent, handoff_id, text,
                             idempotency_key=form.get("idempotency_key") or None)

    return _act(pages, handoffs, session, handoff_id, run,
                "Note added.", drafts={"note": form.get("text", "")})


@router.post("/console/handoffs/{handoff_id}/resolve")
def resolve(handoff_id: str, handoffs: HandoffsDep, session: PostSessionDep, pages: PagesDep,
            form: FormDep) -> Response:
    def run() -> object:
        outcome = form.get("outcome", "")
        if outcome not in handoffs.outcomes():
            raise _FormError("choose an outcome")
        return handoffs.resolve(session.agent, handoff_id, outcome,
                                note=_text(form, "note") or None)

    return _act(pages, handoffs, session, handoff_id, run,
                "Resolved.")


@router.post("/console/handoffs/{handoff_id}/return")
def return_to_bot(handoff_id: str, handoffs: HandoffsDep, session: PostSessionDep,
                  pages: PagesDep, form: FormDep) -> Response:
    return _act(pages, handoffs, session, handoff_id,
                lambda: handoffs.return_to_bot(
                    session.agent, handoff_id, note=_text(form, "note") or None),
                "Returned to the bot: it answers the customer's next message.")


# --- metrics -----------------------------------------------------------------------------------


@router.get("/console/metrics", response_class=HTMLResponse)
def metrics(handoffs: HandoffsDep, session: SessionDep, pages: PagesDep) -> HTMLResponse:
    """Handoff outcomes per queue: time to claim and to resolve, human vs returned."""
    agent = session.agent
    found = handoffs.metrics(agent)  # only the queues the agent's key covers
    context = pages.context(session) | {
        "metrics": found,
        # the total of the agent's queues; for one queue it would repeat that queue's row
        "rows": found.queues + ([found.total] if agent.queues is None or len(agent.queues) > 1
                                else []),
    }
    return pages.render("console/metrics.html", context)
