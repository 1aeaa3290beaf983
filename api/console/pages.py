"""Rendering the console's pages: the Jinja2 environment and its filters, the context every page
shares, the security headers every answer carries, and the error page for a domain refusal.

Templates live in ``api/templates``, assets in ``api/static`` (no CDN, no build step)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from agent.knowledge import KnowledgeBase
from api.console.session import ConsoleSession
from api.deps import KnowledgeDep, StoreDep
from api.errors import status_of
from core.clock import aware
from core.domain import Message
from core.errors import DomainError
from journey.handoffs import human_duration
from memory.store import Store

#: ``api/``: the templates and static assets sit beside the console package.
HERE = Path(__file__).parent.parent

#: Everything is same-origin; no inline script or style (htmx is told not to inject its own).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def get_templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.console_templates
    return templates


TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]


def is_htmx(request: Request) -> bool:
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


def percent(rate: float | None) -> str:
    """``0.1429`` as ``14.3%``; ``—`` for no rate."""
    return "—" if rate is None else f"{rate * 100:.1f}%"


def points(lift: float | None) -> str:
    """A difference of two rates in percentage points: ``+7.1``; ``—`` for none."""
    return "—" if lift is None else f"{lift * 100:+.1f}"


def hours(value: float | None) -> str:
    """``72.08`` hours as ``72.1 h``; ``—`` for none."""
    return "—" if value is None else f"{value:.1f} h"


def duration(value: float | None) -> str:
    """``72.08`` hours as ``3d 0h``; ``—`` for none."""
    return "—" if value is None else human_duration(value * 3600)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        age=age, seconds=lambda s: human_duration(s or 0.0), author_label=author_label,
        author_kind=author_kind, percent=percent, points=points, hours=hours,
        duration=duration,
    )
    return env


class Pages:
    """One request's pages: its templates and what every page shows. Routes take it as
    ``pages: PagesDep`` instead of the four things it is made of."""

    def __init__(self, request: Request, templates: Jinja2Templates, knowledge: KnowledgeBase,
                 store: Store) -> None:
        self.request = request
        self.templates = templates
        self.knowledge = knowledge
        self.store = store

    @property
    def htmx(self) -> bool:
        """Whether htmx sent the request (it wants a fragment, not a page)."""
        return is_htmx(self.request)

    def context(self, session: ConsoleSession | None, **extra: Any) -> dict[str, Any]:
        """What every page shows (the signed-in agent, the CSRF token, the company, the time),
        and ``extra``."""
        return {
            "request": self.request,
            "agent": session.agent if session else None,
            "admin": session.admin if session else False,
            "csrf": session.csrf if session else "",
            "company": self.knowledge.company,
            "now": self.store.clock.now(),
        } | extra

    def render(self, name: str, context: dict[str, Any], status_code: int = 200,
               headers: dict[str, str] | None = None) -> HTMLResponse:
        """The template with the security headers (and ``headers``)."""
        response = self.templates.TemplateResponse(self.request, name, context,
                                                   status_code=status_code)
        response.headers.update(SECURITY_HEADERS)
        response.headers.update(headers or {})
        return response

    def error(self, session: ConsoleSession | None, exc: DomainError,
              name: str = "console/error.html") -> HTMLResponse:
        """A domain refusal as a page, with the status the API would answer (``status_of``)."""
        return self.render(name, self.context(session, message=exc.detail), status_of(exc))


def get_pages(request: Request, templates: TemplatesDep, knowledge: KnowledgeDep,
              store: StoreDep) -> Pages:
    return Pages(request, templates, knowledge, store)


PagesDep = Annotated[Pages, Depends(get_pages)]
