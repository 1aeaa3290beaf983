"""Real local HTTP servers that play third-party providers in tests (the adapters under test
talk HTTP to them exactly as to the real thing).

- :class:`FakeTwilio`: Twilio's Messages API (basic auth, form fields, Twilio's error codes),
  plus signed webhooks *to* us: status callbacks and inbound messages.
- :class:`WebhookReceiver`: the far end of the generic webhook transport; checks
  ``X-Journey-Signature`` and records each JSON body.

Both are context managers (``with FakeTwilio() as twilio: ... twilio.base_url``), listen on
127.0.0.1 on a free port, and share the failure injection and the idempotency behaviour:

- ``down = True``: every call answers 503 and nothing is processed;
- ``fail_rate``: that share of calls answers 500 *before* processing (seeded RNG: ``seed``);
- ``fail_after_rate``: that share of calls is processed and recorded, then answered 500 — the
  ambiguous failure idempotency keys exist for;
- a repeated ``Idempotency-Key`` of a processed call returns the first answer (201/200) and is
  not processed again (``replays`` counts them).

``messages`` (Twilio) and ``received`` (webhook) list what was processed, once each.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import time
from base64 import b64decode
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

import httpx

from channels.twilio import twilio_signature
from channels.webhook import SIGNATURE_HEADER, verify_webhook

Answer = tuple[int, dict[str, Any]]


def reply_json(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
    """Answer a request of ``handler`` with ``payload`` as JSON."""
    raw = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(raw)))
    handler.end_headers()
    handler.wfile.write(raw)


class FakeProvider:
    """A provider on a loopback port; subclasses implement :meth:`process`."""

    def __init__(self, *, fail_rate: float = 0.0, fail_after_rate: float = 0.0,
                 seed: int = 0) -> None:
        self.fail_rate = fail_rate
        self.fail_after_rate = fail_after_rate
        self.down = False
        self.rng = random.Random(seed)
        #: every HTTP call, whatever its outcome
        self.calls = 0
        #: calls answered from the idempotency cache
        self.replays = 0
        self._answers: dict[str, Answer] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def process(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> tuple[Answer, bool]:
        """(answer, processed): processed means recorded, so cached under its key."""
        raise NotImplementedError

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        with self._lock:
            self.calls += 1
            if self.down:
                return 503, {"code": 20503, "message": "Service Unavailable", "status": 503}
            if self.fail_rate and self.rng.random() < self.fail_rate:
                return 500, {"code": 20500, "message": "Internal Server Error", "status": 500}
            key = headers.get("idempotency-key")
            if key and key in self._answers:
                self.replays += 1
                return self._answers[key]
            answer, processed = self.process(method, path, headers, body)
            if processed and key:
                self._answers[key] = answer
            if processed and self.fail_after_rate and self.rng.random() < self.fail_after_rate:
                return 500, {"code": 20500, "message": "Internal Server Error", "status": 500}
            return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply_json(self, *provider._answer(self.command, self.path, headers, body))

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read the recorded calls instead."""

        return Handler


PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
WHATSAPP = "whatsapp:"


def _twilio_error(status: int, code: int, message: str) -> Answer:
    return status, {"code": code, "message": message, "status": status,
                    "more_info": f"https://www.twilio.com/docs/errors/{code}"}


class FakeTwilio(FakeProvider):
    """Twilio's ``POST /2010-04-01/Accounts/{sid}/Messages.json``. Numbers in
    ``invalid_numbers`` (and anything not E.164) are refused with Twilio's 400 error 21211."""

    def __init__(self, account_sid: str = "AC" + "0" * 32, auth_token: str = "tw-token",
                 **failures: Any) -> None:
        super().__init__(**failures)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.invalid_numbers: set[str] = set()
        #: each message processed: sid, to, from, body, status_callback, idempotency_key
        self.messages: list[dict[str, Any]] = []

    def process(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> tuple[Answer, bool]:
        if method != "POST" or path != f"/2010-04-01/Accounts/{self.account_sid}/Messages.json":
            return _twilio_error(404, 20404, "The requested resource was not found"), False
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        try:
            user, _, password = b64decode(encoded).decode().partition(":")
        except ValueError:
            user = password = ""
        if scheme.lower() != "basic" or (user, password) != (self.account_sid, self.auth_token):
            return _twilio_error(401, 20003, "Authenticate"), False
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        to, sender, text = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required."), False
        if not text:
            return _twilio_error(400, 21602, "Message body is required."), False
        if to.startswith(WHATSAPP) != sender.startswith(WHATSAPP):
            return _twilio_error(400, 21910, "Invalid From and To pair."), False
        number = to.removeprefix(WHATSAPP)
        if number in self.invalid_numbers or not PHONE.match(number):
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone "
                                             "number."), False
        sid = "SM" + secrets.token_hex(16)
        self.messages.append({
            "sid": sid, "to": to, "from": sender, "body": text,
            "status_callback": form.get("StatusCallback"),
            "idempotency_key": headers.get("idempotency-key"),
        })
        return (201, {"sid": sid, "account_sid": self.account_sid, "to": to, "from": sender,
                      "body": text, "status": "queued", "num_segments": "1"}), True

    def post_signed(self, url: str, fields: dict[str, str]) -> httpx.Response:
        """POST ``fields`` to ``url`` as Twilio does: form-encoded, with X-Twilio-Signature."""
        signature = twilio_signature(self.auth_token, url, fields)
        return httpx.post(url, data=fields, headers={"X-Twilio-Signature": signature},
                          timeout=30)

    def report_status(self, sid: str, status: str, url: str | None = None,
                      error_code: str | None = None) -> httpx.Response:
        """Send a delivery-status callback for message ``sid`` (to its StatusCallback, or
        ``url``)."""
        message = next((m for m in self.messages if m["sid"] == sid), {})
        target = url or message.get("status_callback")
        if not target:
            raise ValueError(f"no status callback URL for {sid}")
        fields = {"MessageSid": sid, "MessageStatus": status, "AccountSid": self.account_sid,
                  "To": message.get("to", ""), "From": message.get("from", "")}
        if error_code:
            fields["ErrorCode"] = error_code
        return self.post_signed(target, fields)

    def send_inbound(self, url: str, sender: str, text: str, to: str = "+14155550199",
                     sid: str | None = None, **extra: str) -> httpx.Response:
        """An inbound message webhook, as Twilio posts it when a customer texts us."""
        fields = {"MessageSid": sid or "SM" + secrets.token_hex(16),
                  "AccountSid": self.account_sid, "From": sender, "To": to, "Body": text,
                  "NumMedia": "0", **extra}
        return self.post_signed(url, fields)


class WebhookReceiver(FakeProvider):
    """Records each correctly signed JSON POST; a wrong, stale or missing signature is a 401
    and nothing is recorded. ``now`` is the receiver's clock for the staleness check."""

    def __init__(self, secret: str = "wh-secret", now: Callable[[], float] = time.time,
                 **failures: Any) -> None:
        super().__init__(**failures)
        self.secret = secret
        self.now = now
        #: each accepted call: {"path", "headers", "json"}
        self.received: list[dict[str, Any]] = []

    def process(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> tuple[Answer, bool]:
        header = headers.get(SIGNATURE_HEADER.lower())
        if method != "POST" or not verify_webhook(self.secret, header, body, self.now()):
            return (401, {"error": "invalid signature"}), False
        try:
            payload = json.loads(body)
        except ValueError:
            return (400, {"error": "not JSON"}), False
        self.received.append({"path": path, "headers": headers, "json": payload})
        return (200, {"id": "wh_" + secrets.token_hex(8), "status": "accepted"}), True
