"""Signing in and out of the console, and where a request without a session is sent.

An agent posts their API key (one with an ``inbox`` scope) once. Failed attempts are limited per
client address (``JOURNEY_RATE_LIMIT_LOGIN``); over the limit the address gets the form back
with ``429`` and ``Retry-After``, whatever key it sends. The session cookie itself is
:mod:`api.console.session`'s.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.pages import PagesDep, is_htmx
from api.console.session import (
    COOKIE,
    LOGIN,
    SESSION_MAX_S,
    FormDep,
    PostSessionDep,
    key_hash,
    known_key,
    session_cookie,
)
from api.deps import CallerDep, SettingsDep, agent_for_key
from api.ratelimit import RateLimited

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a console path: never another site (``//evil``, ``/\\evil``)."""
    if target and target.startswith("/console") and "\\" not in target:
        return target
    return "/console"


@router.get(LOGIN, response_class=HTMLResponse)
def login_form(
    pages: PagesDep, next_: Annotated[str, Query(alias="next", max_length=500)] = "/console",
) -> HTMLResponse:
    context = pages.context(None, next=_safe_next(next_), error=None)
    return pages.render("console/login.html", context)


@router.post(LOGIN, response_class=HTMLResponse)
def login(request: Request, settings: SettingsDep, pages: PagesDep, form: FormDep,
          caller: CallerDep) -> Response:
    key = form.get("key", "").strip()
    target = _safe_next(form.get("next"))
    known = known_key(settings, key_hash(key)) if key else None
    agent = agent_for_key(settings, known) if known else None
    try:
        caller.limiter.check("login", caller.address)  # a blocked address learns nothing
        if agent is None:
            caller.hit("login")  # only failed attempts count
    except RateLimited as exc:
        context = pages.context(None, next=target, error=exc.detail)
        return pages.render("console/login.html", context, 429,
                            headers={"Retry-After": str(exc.retry_after)})
    if agent is None:
        error, status_code = (
            ("This API key has no inbox scope: it needs 'inbox' or 'inbox:<queue>'.", 403)
            if known else ("Unknown API key.", 401)
        )
        context = pages.context(None, next=target, error=error)
        return pages.render("console/login.html", context, status_code)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE, session_cookie(settings, key, pages.store.clock.now()),
        max_age=SESSION_MAX_S, path="/console", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/console/logout")
def logout(_session: PostSessionDep) -> Response:
    response = RedirectResponse(LOGIN, status_code=303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return response


async def to_login(request: Request, exc: Exception) -> Response:
    """Where a request without a session goes: the login page, then back to where it was."""
    if is_htmx(request):  # htmx follows HX-Redirect with a full page load
        return Response(status_code=401, headers={"HX-Redirect": LOGIN})
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{LOGIN}?next={quote(target, safe='')}", status_code=303)
