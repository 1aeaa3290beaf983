"""Compressed request bodies: a body sent with ``Content-Encoding: gzip`` (or ``deflate``) is
decompressed before anything else reads it, so the routes and the request guard
(:mod:`api.guards`) see plain JSON. The RudderStack SDKs compress every batch; Segment's may.

The decompressed body is bounded by the same ``max_body_bytes`` as any body (``413`` beyond it,
checked as it is decompressed, so a small bomb cannot fill the memory); a body that is not
valid in its encoding is a ``400``, an encoding we do not know a ``415``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: encodings we decode, and zlib's ``wbits`` for each (47: a gzip or zlib header, detected)
_WBITS = {"gzip": 47, "x-gzip": 47, "deflate": 47}


def _error(status: int, msg: str, kind: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={
        "detail": f"body: {msg}",
        "errors": [{"loc": ["body"], "msg": msg, "type": kind}],
    })


def decompress(data: bytes, encoding: str, limit: int) -> bytes | None:
    """``data`` decoded; None when it is larger than ``limit`` once decoded. A ``ValueError``
    when it is not valid ``encoding``."""
    decoder = zlib.decompressobj(_WBITS[encoding])
    try:
        out = decoder.decompress(data, limit + 1)
        if len(out) > limit or decoder.unconsumed_tail:
            return None
        out += decoder.flush()
    except zlib.error as exc:
        raise ValueError(str(exc)) from None
    if not decoder.eof:
        raise ValueError("the compressed data ends early")
    return out if len(out) <= limit else None


class DecodeRequestBody:
    """Decompresses a request body sent with ``Content-Encoding: gzip`` or ``deflate``."""

    def __init__(self, app: ASGIApp, max_body_bytes: Callable[[], int]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = list(scope.get("headers", ()))
        encoding = next((v.decode("latin-1").strip().lower() for k, v in headers
                         if k.lower() == b"content-encoding"), "")
        if encoding in ("", "identity"):
            await self.app(scope, receive, send)
            return
        if encoding not in _WBITS:
            await _error(415, f"Content-Encoding {encoding!r} is not supported; send gzip, "
                         "deflate or none", "value_error.encoding")(scope, receive, send)
            return
        limit = self.max_body_bytes()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                break
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        try:
            body = decompress(b"".join(chunks), encoding, limit) if size <= limit else None
        except ValueError as exc:
            await _error(400, f"not valid {encoding}: {exc}", "value_error.encoding")(
                scope, receive, send)
            return
        if body is None:
            await _error(413, f"larger than {limit} bytes once decompressed, the limit "
                         "(JOURNEY_MAX_BODY_BYTES); send smaller batches",
                         "value_error.too_large")(scope, receive, send)
            return
        headers = [(k, v) for k, v in headers
                   if k.lower() not in (b"content-encoding", b"content-length")]
        headers.append((b"content-length", str(len(body)).encode()))
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)
