"""Fixtures for the promise tests: the real app served (``serve``) and a fake Twilio
(``twilio``, with ``twilio_settings``), shared with the channel tests."""

from __future__ import annotations

from tests.channels.conftest import (
    TWILIO_INBOUND,
    Served,
    ServeFactory,
    serve,
    twilio,
    twilio_settings,
)

__all__ = ["TWILIO_INBOUND", "ServeFactory", "Served", "serve", "twilio", "twilio_settings"]
