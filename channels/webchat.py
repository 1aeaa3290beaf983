"""Web chat: the transport, and the session tokens of the browser widget.

A web-chat message is shown by the customer's open event stream (``GET
/v1/webchat/{session}/stream``), which reads delivered messages from the database; sending one
only wakes the streams of this process (``hub``), and streams elsewhere find it on their next
poll.

The widget cannot hold an API key, so it holds a session instead: a random id (``wc_...``) and a
token, the HMAC-SHA256 of the id under the session secret (``session_secret``, or a random key
created once in ``<data_dir>/session.key``). The token proves the server issued that id, with no
session table to look up.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from channels.base import Delivery, SendResult
from journey.hub import Hub
from journey.settings import Settings

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


def session_token(key: bytes, session_id: str) -> str:
    return hmac.new(key, session_id.encode(), hashlib.sha256).hexdigest()


def valid_session_token(key: bytes, session_id: str, token: str | None) -> bool:
    """Constant-time check of a session's token."""
    return bool(token) and hmac.compare_digest(
        session_token(key, session_id).encode(), (token or "").encode()
    )
