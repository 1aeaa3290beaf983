"""The console session: the session cookie, CSRF, and the dependencies that admit a page
(``SessionDep``) or a POST (``PostSessionDep``). Signing in and out is in
:mod:`api.console.signin`.

The cookie never
holds the key: it is ``<sha256 of the key>.<issued at>.<HMAC>`` under the web-chat session
secret, HttpOnly, SameSite=Strict, valid 12 hours. Each request finds the key again by its hash
in the settings, so removing a key ends its sessions. Every POST carries a CSRF token derived
from the cookie (``X-CSRF-Token``, set by htmx from ``<body hx-headers>``, or a ``csrf_token``
form field); without it the answer is 403.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, HTTPException, Request

from api.deps import SettingsDep, StoreDep, agent_of
from channels.webchat import session_key
from core.settings import Settings
from journey.handoffs import Agent

COOKIE = "journey_console"
SESSION_MAX_S = 12 * 3600
MAX_FORM_BYTES = 64 * 1024
LOGIN = "/console/login"



class LoginRequired(Exception):
    """No valid console session: the browser is sent to the login page."""


@dataclass(frozen=True)
class ConsoleSession:
    agent: Agent
    csrf: str
    #: the key's scopes: what else the console shows (journeys need ``admin``, as in the API)
    scopes: frozenset[str] = frozenset()

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes


# --- the session cookie ------------------------------------------------------------------------


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _mac(settings: Settings, purpose: str, value: str) -> str:
    message = f"console-{purpose}:{value}".encode()
    return hmac.new(session_key(settings), message, hashlib.sha256).hexdigest()


def known_key(settings: Settings, key_id: str) -> str | None:
    """The configured API key whose hash is ``key_id`` (constant time per key)."""
    found = None
    for key in settings.api_keys:
        if hmac.compare_digest(key_hash(key).encode(), key_id.encode()):
            found = key
    return found


def session_cookie(settings: Settings, key: str, now: datetime) -> str:
    payload = f"{key_hash(key)}.{int(now.timestamp())}"
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
    key = known_key(settings, key_id)
    holder = settings.api_key(key) if key else None
    agent = agent_of(holder) if holder else None
    if holder is None or agent is None:
        return None
    return ConsoleSession(agent=agent, csrf=_mac(settings, "csrf", cookie),
                          scopes=frozenset(holder.scopes))


# --- dependencies ------------------------------------------------------------------------------


def console_session(request: Request, settings: SettingsDep, store: StoreDep) -> ConsoleSession:
    session = read_session(settings, request.cookies.get(COOKIE), store.clock.now())
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
