"""Web chat: the transport, and the session tokens of the browser widget.

A web-chat message is shown by the customer's open event stream (``GET
/v1/webchat/{session}/stream``), which reads delivered messages from the database; sending one
only wakes the streams of this process (``hub``), and streams elsewhere find it on their next
poll.

The widget cannot hold an API key, so it holds a session instead: a random id (``wc_...``) and a
token, ``<issued at, unix seconds>.<HMAC-SHA256 of "<id>.<issued at>">`` under the session secret
(``session_secret``, or a random key created once in ``<data_dir>/session.key``). The token
proves the server issued that id, and when, with no session table to look up; it expires
``webchat_session_ttl_s`` after it was issued.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Literal

from channels.base import Delivery, SendResult
from core.hub import Hub
from core.settings import Settings

SESSION_PREFIX = "wc_"


class WebChatAdapter:
    name = "webchat"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def send(self, delivery: Delivery) -> SendResult:
        self.hub.notify(f"customer:{delivery.customer_id}")
        return SendResult(provider_status="delivered")

    def close(self) -> None:
        """Nothing to close."""


def _key_file(path: Path) -> bytes:
    """The key in ``path``, created (0600, atomically: a concurrent creator wins once) if
    missing."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".session.key.")  # created 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return bytes.fromhex(path.read_text().strip())


def session_key(settings: Settings) -> bytes:
    """The key web-chat session tokens are signed with."""
    configured = settings.session_secret.get_secret_value()
    if configured:
        return configured.encode()
    return _key_file(settings.data_dir / "session.key")


def new_session_id() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(18)


TokenCheck = Literal["valid", "wrong", "expired"]


def _mac(key: bytes, session_id: str, issued: str) -> str:
    return hmac.new(key, f"{session_id}.{issued}".encode(), hashlib.sha256).hexdigest()


def session_token(key: bytes, session_id: str, issued: datetime) -> str:
    """The token of a session issued at ``issued``."""
    stamp = str(int(issued.timestamp()))
    return f"{stamp}.{_mac(key, session_id, stamp)}"


def check_session_token(
    key: bytes, session_id: str, token: str | None, *, now: datetime, ttl_s: float
) -> TokenCheck:
    """``valid``; ``wrong`` (missing, forged, another session's); or ``expired`` (ours, issued
    ``ttl_s`` or more before ``now``). The signature is compared in constant time."""
    if not token or not token.isascii():
        return "wrong"
    stamp, _, mac = token.partition(".")
    if not stamp.isdigit() or len(stamp) > 12:
        return "wrong"
    if not hmac.compare_digest(_mac(key, session_id, stamp).encode(), mac.encode()):
        return "wrong"
    return "expired" if now.timestamp() - int(stamp) >= ttl_s else "valid"
