"""The contact policy: consent per purpose and channel, frequency caps, quiet hours, channels."""

from __future__ import annotations

import unicodedata
from datetime import time
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.clock import TimezoneName
from core.domain import CHANNELS, Channel, Purpose
from policy.model_base import Duration, Strict, unique_names

ConsentRule = Literal["explicit", "implied", "reply"]


_CONSENT_RULES: dict[Purpose, ConsentRule] = {
    "marketing": "explicit", "service": "reply", "transactional": "implied"
}
_MARKETING: tuple[Purpose, ...] = ("marketing",)
_KEYWORD_CHANNELS: tuple[Channel, ...] = ("sms", "whatsapp")


class ConsentPolicy(Strict):
    """What consent each purpose needs on a channel.

    ``explicit``: the customer granted it; ``implied``: allowed unless revoked; ``reply``: implied
    on the channel the customer just wrote on, explicit on any other.
    """

    purposes: dict[Purpose, ConsentRule] = Field(default_factory=lambda: dict(_CONSENT_RULES))
    #: The carrier-standard keywords (CTIA): a message that is one of them, however typed
    #: (any case, full-width or accented letters, spaced out, with punctuation), opts out.
    opt_out_keywords: list[str] = Field(
        default_factory=lambda: ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"]
    )
    #: More opt-out keywords, e.g. in the customers' other languages (ARRET, BAJA, STOPP).
    opt_out_keywords_extra: list[str] = Field(default_factory=list)
    opt_in_keywords: list[str] = Field(default_factory=lambda: ["START", "UNSTOP", "YES"])
    #: Where a bare keyword is an opt-out (carrier keywords). On other channels "cancel" or
    #: "end" alone usually means something else; there the classifier and a cue decide.
    keyword_channels: list[Channel] = Field(default_factory=lambda: list(_KEYWORD_CHANNELS))
    #: An opt-out also counts when the intent classifier reads one with at least this confidence
    #: *and* the message has one of ``opt_out_cues`` ("text me a code" reads like "don't text
    #: me" to an embedding; a cue word tells them apart).
    opt_out_intent_confidence: float = Field(0.6, ge=0, le=1)
    opt_out_cues: list[str] = Field(
        default_factory=lambda: [
            "stop", "don't", "dont", "do not", "no more", "unsubscribe", "unsub", "remove",
            "opt out", "opt-out", "take me off", "off your list", "off the list", "never",
            "not interested", "leave me alone",
        ]
    )
    #: The one message sent after an opt-out, whatever the model proposed.
    opt_out_confirmation: str = (
        "You're unsubscribed and won't receive further messages on this channel. "
        "Reply START to opt back in."
    )

    @field_validator("purposes")
    @classmethod
    def _every_purpose(cls, value: dict[Purpose, ConsentRule]) -> dict[Purpose, ConsentRule]:
        missing = {"marketing", "service", "transactional"} - set(value)
        if missing:
            raise ValueError(f"consent rule missing for purposes {sorted(missing)}")
        return value

    @field_validator("opt_out_keywords", "opt_out_keywords_extra", "opt_in_keywords")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        found = [keyword_form(v) for v in value if keyword_form(v)]
        bad = [v for v in value if v.strip() and not keyword_form(v)]
        if bad:
            raise ValueError(f"keywords must contain letters: {bad}")
        return found


def keyword_form(text: str) -> str:
    """How a keyword is compared: compatibility forms folded (full-width letters), accents
    dropped, only the letters kept, upper case: "Ｓ t.o.p!", "S T O P" and "stop" are "STOP",
    "Arrêt" is "ARRET"."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    return "".join(c for c in decomposed if c.isalpha()).upper()


class FrequencyCap(Strict):
    """At most ``max`` messages of ``purposes`` on ``channels`` per ``window`` (rolling) or per
    calendar ``day`` in the customer's timezone. Replies to the customer's own message are not
    counted or capped unless ``include_replies``."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    max: int = Field(ge=0)
    purposes: list[Purpose] = Field(default_factory=lambda: list(_MARKETING))
    #: Empty: across all channels together.
    channels: list[Channel] = Field(default_factory=list)
    window: Duration | None = None
    per: Literal["day"] | None = None
    include_replies: bool = False


    @model_validator(mode="after")
    def _one_window(self) -> FrequencyCap:
        if (self.window is None) == (self.per is None):
            raise ValueError(f"cap {self.name!r}: give exactly one of 'window' or 'per: day'")
        if "transactional" in self.purposes:
            raise ValueError(f"cap {self.name!r}: transactional messages are exempt from caps")
        return self


class QuietHours(Strict):
    """No ``purposes`` messages between ``start`` and ``end`` in the customer's local time."""

    start: time = time(21, 0)
    end: time = time(8, 0)
    purposes: list[Purpose] = Field(default_factory=lambda: list(_MARKETING))
    default_timezone: TimezoneName = "UTC"

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours start and end are equal")
        if "transactional" in self.purposes:
            raise ValueError("transactional messages are exempt from quiet hours")
        return self


class ChannelPolicy(Strict):
    available: bool = True
    max_chars: int = Field(gt=0)
    #: Markdown is turned into plain text on channels that do not render it.
    markdown: bool = False


def _default_channels() -> dict[Channel, ChannelPolicy]:
    return {
        "web_chat": ChannelPolicy(max_chars=2000, markdown=True),
        "email": ChannelPolicy(max_chars=10000, markdown=True),
        "sms": ChannelPolicy(max_chars=459),
        "whatsapp": ChannelPolicy(max_chars=4096),
    }


class ContactPolicy(Strict):
    consent: ConsentPolicy = Field(default_factory=ConsentPolicy)
    caps: list[FrequencyCap] = Field(default_factory=list)
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    channels: dict[Channel, ChannelPolicy] = Field(default_factory=_default_channels)
    #: Order in which the engine tries channels when it may switch one (the customer's own
    #: ``channel_preference`` attribute comes first).
    preference: list[Channel] = Field(default_factory=lambda: list(CHANNELS))
    #: Switch a proactive message to the next allowed channel instead of denying it.
    switch_channels: bool = True

    @field_validator("channels")
    @classmethod
    def _every_channel(cls, value: dict[Channel, ChannelPolicy]) -> dict[Channel, ChannelPolicy]:
        missing = set(CHANNELS) - set(value)
        if missing:
            raise ValueError(f"channel settings missing for {sorted(missing)}")
        return value

    @model_validator(mode="after")
    def _unique_caps(self) -> ContactPolicy:
        unique_names("cap", [c.name for c in self.caps])
        return self
