"""build_adapters: the documented defaults, overrides and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from channels.base import Delivery
from channels.devbox import DevboxAdapter
from channels.registry import build_adapters, close_adapters, transports
from channels.smtp import SmtpAdapter
from channels.twilio import TwilioAdapter
from channels.webchat import WebChatAdapter
from channels.webhook import WebhookAdapter
from core.hub import Hub
from core.settings import Settings


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **overrides)  # type: ignore[call-arg]


TWILIO = {"twilio_account_sid": "AC1", "twilio_auth_token": "t", "twilio_sms_from": "+1415555"}


def kinds(tmp_path: Path, **overrides: Any) -> dict[str, type]:
    adapters = build_adapters(settings(tmp_path, **overrides), Hub())
    try:
        return {channel: type(adapter) for channel, adapter in adapters.items()}
    finally:
        close_adapters(adapters)


def test_a_fresh_machine_writes_to_the_devbox(tmp_path: Path) -> None:
    assert kinds(tmp_path) == {
        "web_chat": WebChatAdapter, "email": DevboxAdapter, "sms": DevboxAdapter,
        "whatsapp": DevboxAdapter,
    }
    adapters = build_adapters(settings(tmp_path), Hub())
    email = adapters["email"]
    assert isinstance(email, DevboxAdapter)
    assert email.path == tmp_path / "outbox" / "email.jsonl"


def test_configured_providers_are_used(tmp_path: Path) -> None:
    assert kinds(tmp_path, smtp_host="mail.example", **TWILIO) == {
        "web_chat": WebChatAdapter, "email": SmtpAdapter, "sms": TwilioAdapter,
        # no WhatsApp sender configured: WhatsApp stays on the devbox
        "whatsapp": DevboxAdapter,
    }
    assert kinds(tmp_path, twilio_whatsapp_from="+1415556", **TWILIO)["whatsapp"] is TwilioAdapter


def test_overrides(tmp_path: Path) -> None:
    found = kinds(tmp_path, smtp_host="mail.example", webhook_url="http://hooks.example/",
                  webhook_secret="s", channel_transports={"sms": "webhook", "email": "devbox"})
    assert found["sms"] is WebhookAdapter
    assert found["email"] is DevboxAdapter


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"channel_transports": {"sms": "carrier-pigeon"}},
         "unknown transport 'carrier-pigeon' for sms; transports are smtp, twilio, webhook"),
        ({"channel_transports": {"fax": "devbox"}}, "unknown channel fax"),
        ({"channel_transports": {"sms": "smtp"}}, "the smtp transport cannot carry sms"),
        ({"channel_transports": {"email": "webchat"}}, "the webchat transport cannot carry email"),
        ({"channel_transports": {"whatsapp": "twilio"}},
         "the twilio transport for whatsapp needs twilio_account_sid, twilio_auth_token"),
        ({"channel_transports": {"sms": "webhook"}}, "needs webhook_url and webhook_secret"),
        ({"channel_transports": {"email": "smtp"}}, "needs smtp_host"),
    ],
)
def test_bad_transport_settings_are_refused_clearly(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_adapters(settings(tmp_path, **overrides), Hub())


def test_transports_lists_names(tmp_path: Path) -> None:
    assert transports(settings(tmp_path, channel_transports={"sms": "webhook"})) == {
        "web_chat": "webchat", "email": "devbox", "sms": "webhook", "whatsapp": "devbox",
    }


def test_web_chat_wakes_the_customers_streams() -> None:
    hub = Hub()
    delivery = Delivery(
        outbox_id="out_1", message_id="msg_1", idempotency_key="k", customer_id="cus_9",
        conversation_id="con_1", channel="web_chat", address="wc_abc", text="hi",
        purpose="service",
    )
    result = WebChatAdapter(hub).send(delivery)
    assert result.provider_status == "delivered"
    assert hub.version("customer:cus_9") == 1
    assert hub.version("customer:cus_other") == 0
