"""Fixtures for the promise tests: the real app served (``serve``) and a fake Twilio."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.channels.conftest import Served, ServeFactory, serve
from tests.providers import FakeTwilio

__all__ = ["ServeFactory", "Served", "serve"]

SID = "AC" + "0" * 32
TWILIO_INBOUND = "/v1/channels/twilio/inbound"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(account_sid=SID, auth_token="tw-token") as fake:
        yield fake


def twilio_settings(twilio: FakeTwilio, **extra: Any) -> dict[str, Any]:
    return {"twilio_account_sid": SID, "twilio_auth_token": "tw-token",
            "twilio_base_url": twilio.base_url, "twilio_sms_from": "+14155550199", **extra}
