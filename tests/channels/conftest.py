"""Fixtures for the channel tests: the real app under uvicorn, a real SMTP server (aiosmtpd), a
port that refuses connections and one that never answers."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from journey.runtime import Container
from tests.conftest import ContainerFactory
from tests.providers import FakeTwilio
from tests.server import bound_socket, free_port, running_server

#: The fake Twilio account the channel and promise tests sign with.
TWILIO_SID = "AC" + "0" * 32
TWILIO_INBOUND = "/v1/channels/twilio/inbound"


@dataclass
class Served:
    container: Container
    base: str


ServeFactory = Callable[..., Served]


@pytest.fixture
def serve(make_container: ContainerFactory) -> Iterator[ServeFactory]:
    """``serve(**settings)``: a container with these settings, served; ``public_url`` may use
    the placeholder ``{base}`` for the server's own URL."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> Served:
            sock = bound_socket()  # the URL is known before the settings are made
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            if "public_url" in overrides:
                overrides["public_url"] = overrides["public_url"].format(base=base)
            container = make_container(**overrides)
            stack.enter_context(running_server(container, sock=sock))
            return Served(container, base)

        yield start


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    """Twilio's Messages API on a loopback port, signing webhooks with ``tw-token``."""
    with FakeTwilio(account_sid=TWILIO_SID, auth_token="tw-token") as fake:
        yield fake


def twilio_settings(twilio: FakeTwilio, **extra: Any) -> dict[str, Any]:
    """Settings that send SMS through ``twilio`` and check its webhooks' signatures."""
    return {"twilio_account_sid": TWILIO_SID, "twilio_auth_token": "tw-token",
            "twilio_base_url": twilio.base_url, "twilio_sms_from": "+14155550199", **extra}


# --- SMTP ------------------------------------------------------------------------------------


@dataclass
class SmtpServer:
    """What a real aiosmtpd server received; an address in ``refuse`` gets that reply to RCPT."""

    host: str
    port: int
    envelopes: list[Envelope] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 queued"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login, auth_data.password) == (b"journey", b"s3cret")
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer("127.0.0.1", free_port())
    controller = Controller(server, hostname=server.host, port=server.port,
                            authenticator=server.authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def refusing_port() -> int:
    """A port nothing listens on: connections are refused."""
    return free_port()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])
