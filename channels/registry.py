"""Which transport carries each channel, from settings.

Defaults (``Settings.channel_transports`` overrides any of them, e.g. ``{"sms": "webhook"}``):

========== ==================================================================================
email      ``smtp`` when ``smtp_host`` is set, else ``devbox``
sms        ``twilio`` when ``twilio_account_sid`` and ``twilio_sms_from`` are set, else ``devbox``
whatsapp   ``twilio`` when ``twilio_account_sid`` and ``twilio_whatsapp_from`` are set, else
           ``devbox``
web_chat   ``webchat``
========== ==================================================================================

A Twilio account with only an SMS number keeps WhatsApp on ``devbox`` rather than failing every
WhatsApp message. A transport named explicitly must be fully configured: a missing setting, an
unknown transport or a transport that cannot carry the channel stops start-up with a message
saying which.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args

from channels.base import ChannelAdapter
from channels.devbox import DevboxAdapter
from channels.smtp import SmtpAdapter
from channels.twilio import TwilioAdapter
from channels.webchat import WebChatAdapter
from channels.webhook import WebhookAdapter
from core.clock import Clock
from core.domain import CHANNELS, Channel
from core.hub import Hub
from core.settings import Settings

TRANSPORTS = ("smtp", "twilio", "webhook", "devbox", "webchat")
#: the channels each transport can carry
CARRIES: dict[str, tuple[Channel, ...]] = {
    "smtp": ("email",),
    "twilio": ("sms", "whatsapp"),
    "webhook": CHANNELS,
    "devbox": CHANNELS,
    "webchat": ("web_chat",),
}


def default_transport(settings: Settings, channel: Channel) -> str:
    if channel == "web_chat":
        return "webchat"
    if channel == "email":
        return "smtp" if settings.smtp_host else "devbox"
    sender = settings.twilio_sms_from if channel == "sms" else settings.twilio_whatsapp_from
    return "twilio" if settings.twilio_account_sid and sender else "devbox"


def transports(settings: Settings) -> dict[Channel, str]:
    """The transport name per channel: defaults plus ``channel_transports``, validated."""
    overrides: Mapping[str, str] = settings.channel_transports
    unknown_channels = sorted(set(overrides) - set(CHANNELS))
    if unknown_channels:
        raise ValueError(
            f"channel_transports: unknown channel {', '.join(unknown_channels)}; "
            f"channels are {', '.join(get_args(Channel))}"
        )
    chosen: dict[Channel, str] = {}
    for channel in CHANNELS:
        name = overrides.get(channel) or default_transport(settings, channel)
        if name not in TRANSPORTS:
            raise ValueError(
                f"channel_transports: unknown transport {name!r} for {channel}; "
                f"transports are {', '.join(TRANSPORTS)}"
            )
        if channel not in CARRIES[name]:
            raise ValueError(
                f"channel_transports: the {name} transport cannot carry {channel} "
                f"(it carries {', '.join(CARRIES[name])})"
            )
        chosen[channel] = name
    return chosen


def build_adapter(
    name: str, channel: Channel, settings: Settings, hub: Hub, clock: Clock | None = None
) -> ChannelAdapter:
    if name == "smtp":
        return SmtpAdapter(settings, clock=clock)
    if name == "twilio" and channel in ("sms", "whatsapp"):
        return TwilioAdapter(settings, "sms" if channel == "sms" else "whatsapp")
    if name == "webhook":
        return WebhookAdapter(settings, channel, clock=clock)
    if name == "webchat":
        return WebChatAdapter(hub)
    if name == "devbox":
        return DevboxAdapter(settings.data_dir / "outbox", channel, clock=clock)
    raise ValueError(f"the {name} transport cannot carry {channel}")


def build_adapters(
    settings: Settings, hub: Hub, clock: Clock | None = None
) -> dict[Channel, ChannelAdapter]:
    """One adapter per channel. Raises ValueError naming the problem in the settings."""
    adapters: dict[Channel, ChannelAdapter] = {}
    try:
        for channel, name in transports(settings).items():
            adapters[channel] = build_adapter(name, channel, settings, hub, clock)
    except ValueError:
        close_adapters(adapters)
        raise
    return adapters


def close_adapters(adapters: Mapping[Channel, ChannelAdapter]) -> None:
    for adapter in adapters.values():
        adapter.close()
