"""The web console for the people working the handoff inbox, and the customer chat page.

Server-rendered Jinja2 (``api/templates``) with htmx for the live parts; every asset is served
from ``api/static`` (no CDN, no build step). The console calls the handoff service in-process.

- :mod:`api.console.session`: the session cookie, CSRF, the session dependencies;
- :mod:`api.console.signin`: signing in and out;
- :mod:`api.console.pages`: the templates, the context every page shares, the error page;
- :mod:`api.console.routes`: the inbox, a conversation and its actions, the metrics, the chat;
- :mod:`api.console.journeys`: the journeys, and a journey with steps with its charts
  (:mod:`api.console.charts`: inline SVG, drawn on the server).

Pages: ``/console`` (inbox), ``/console/handoffs/{id}`` (conversation), ``/console/metrics``,
``/console/journeys`` and ``/console/journeys/{name}``, ``/console/login``, and ``/chat`` (the
customer's web chat, for demos).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.console import journeys, routes, signin
from api.console.pages import HERE, environment
from api.console.session import COOKIE, LoginRequired
from api.console.signin import to_login

__all__ = ["COOKIE", "install"]


def install(app: FastAPI) -> None:
    """Serve the console, the chat page and their static assets from ``app``."""
    app.state.console_templates = Jinja2Templates(env=environment())
    app.include_router(signin.router)
    app.include_router(routes.router)
    app.include_router(journeys.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(LoginRequired, to_login)
