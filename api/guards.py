"""Guards at the HTTP edge, before any route runs: a body over ``max_body_bytes`` is a ``413``,
and a NUL character (U+0000) anywhere in the path, the query or the body is a ``422`` naming
where it is.

PostgreSQL refuses U+0000 in text and in JSONB, so a NUL let through fails deep in a route as a
500, perhaps after part of the request was stored. Refused here, for every route, nothing of
such a request is stored. Normal requests stay cheap: a body is parsed only when its bytes hold
a NUL marker (a 0x00 byte, ``\\u0000`` in JSON, ``%00`` in a form or a query).

Provider webhooks are guarded too, before their signatures are checked: a NUL in a signed
Twilio request is a 422, not a 403. Nothing is stored either way, and a provider's retry of it
is refused the same way.

A pure ASGI middleware (not ``BaseHTTPMiddleware``): the body, at most the limit, is read once
and handed on whole, and every later ``receive`` goes to the server, so a stream (the web
chat's Server-Sent Events) still learns when its client goes away.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.forms import multipart_fields

NUL = "\x00"
NUL_MESSAGE = "contains a NUL character (U+0000), which is not allowed"
FORM = "application/x-www-form-urlencoded"
#: byte patterns that may stand for a NUL: raw, JSON-escaped, percent-encoded
_MARKERS = (b"\x00", b"\\u0000", b"%00")
#: a multipart part may encode a NUL (base64, quoted-printable =00): parsed when it says so
_TRANSFER_ENCODING = re.compile(rb"content-transfer-encoding", re.IGNORECASE)

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """What is wrong and where (a FastAPI-style ``loc``)."""

    loc: Loc
    msg: str
    type: str = "value_error.nul"

    def where(self) -> str:
        """``body.events[2].properties.note``: keys joined by dots, list indexes in brackets."""
        out = ""
        for part in self.loc:
            out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
        return out

    def response(self, status_code: int) -> JSONResponse:
        """The project's error shape: ``detail`` for people, ``errors`` for programs."""
        return JSONResponse(status_code=status_code, content={
            "detail": f"{self.where()}: {self.msg}",
            "errors": [{"loc": list(self.loc), "msg": self.msg, "type": self.type}],
        })


def _key_problem(loc: Loc, key: str) -> Problem:
    # the key itself is shown escaped (json.dumps writes U+0000 as \u0000)
    return Problem(loc, f"the key {json.dumps(key)} {NUL_MESSAGE}")


# --- where is the NUL -------------------------------------------------------------------------


def in_value(value: Any, loc: Loc) -> Problem | None:
    """The first NUL in a parsed JSON value (strings and keys), in document order."""
    stack: list[tuple[Loc, Any]] = [(loc, value)]
    while stack:  # no recursion: the parser already took whatever depth the body had
        where, item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return Problem(where, NUL_MESSAGE)
        elif isinstance(item, dict):
            for key in item:
                if NUL in key:
                    return _key_problem(where, key)
            stack.extend(((*where, k), v) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(((*where, i), v) for i, v in reversed(list(enumerate(item))))
    return None


def in_pairs(pairs: list[tuple[str, str]], loc: Loc) -> Problem | None:
    """The first NUL in name/value pairs (a query string, a form)."""
    for name, value in pairs:
        if NUL in name:
            return _key_problem(loc, name)
        if NUL in value:
            return Problem((*loc, name), NUL_MESSAGE)
    return None


def _form(body: bytes) -> Problem | None:
    return in_pairs(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True),
                    ("body",))


def _json(body: bytes) -> Problem | None:
    try:  # strict=False: a raw control character in a string is parsed, so it can be named
        value = json.loads(body, strict=False)
    except (ValueError, RecursionError):
        return None  # not JSON: the route answers that
    return in_value(value, ("body",))


def _multipart(content_type: str, body: bytes) -> Problem | None:
    """The first NUL in a multipart form's text fields (files may hold anything)."""
    return in_pairs(multipart_fields(content_type, body), ("body",))


def _is_json(kind: str) -> bool:
    return kind == "application/json" or kind.endswith("+json")


def body_problem(content_type: str, body: bytes) -> Problem | None:
    """A NUL in ``body``, read as every route may read it: FastAPI takes a body without a
    content type as JSON, the channel webhooks take anything but JSON as a form."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        if b"\x00" in body or _TRANSFER_ENCODING.search(body):
            return _multipart(content_type, body)
        return None
    if not any(marker in body for marker in _MARKERS):
        return None
    found = _json(body) if kind != FORM else None
    if found is None and not _is_json(kind):
        # a JSON body sent without its content type that holds the text "%00" is refused
        # too: the channel webhooks would read it as a form
        found = _form(body)
    if found is None and b"\x00" in body:
        return Problem(("body",), NUL_MESSAGE)
    return found


def url_problem(scope: Scope) -> Problem | None:
    """A NUL in the (decoded) path or in a query parameter."""
    if NUL in scope.get("path", ""):
        return Problem(("path",), NUL_MESSAGE)
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    return in_pairs(parse_qsl(query.decode("latin-1"), keep_blank_values=True), ("query",))


# --- the middleware ---------------------------------------------------------------------------


def _too_large(limit: int) -> Problem:
    return Problem(("body",), f"larger than {limit} bytes, the limit (JOURNEY_MAX_BODY_BYTES); "
                   "send less, e.g. smaller batches", "value_error.too_large")


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            text: str = value.decode("latin-1")
            return text
    return ""


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length header's value (None without one); a huge one is capped."""
    value = _header(scope, b"content-length").strip()
    if not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) < 19 else 1 << 63


class _ClientGone(Exception):
    """The client disconnected before its body was in."""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is over ``limit`` (the rest is never held)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app: the body read here, then the server's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class RequestGuard:
    """Refuses, before any route runs, a body over ``max_body_bytes()`` (413) and a NUL
    character in the path, the query or the body (422)."""

    def __init__(self, app: ASGIApp, max_body_bytes: Callable[[], int]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = url_problem(scope)
        if problem is not None:
            await problem.response(422)(scope, receive, send)
            return
        limit = self.max_body_bytes()
        declared = _declared_length(scope)
        try:  # a declared length over the limit is refused before a byte is read
            body = None if declared is not None and declared > limit \
                else await _read_body(receive, limit)
        except _ClientGone:
            return
        if body is None:
            await _too_large(limit).response(413)(scope, receive, send)
            return
        problem = body_problem(_header(scope, b"content-type"), body) if body else None
        if problem is not None:
            await problem.response(422)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)
