"""What the bot may say (offers, forbidden claims, contact details) and what is masked at
ingress (card numbers, other secrets)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from policy.model_base import Regex, Strict, unique_names


class ForbiddenClaim(Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    pattern: Regex
    on_violation: Literal["rewrite", "block"] = "rewrite"


class ContentPolicy(Strict):
    #: Largest discount, in percent, the bot may mention.
    max_discount_percent: float = Field(0, ge=0, le=100)
    #: Largest credit or refund, in the account currency, the bot may mention or issue.
    max_credit: float = Field(0, ge=0)
    forbidden: list[ForbiddenClaim] = Field(default_factory=list)
    #: Contact details the bot may give out besides the customer's own (the company's).
    allowed_contacts: list[str] = Field(default_factory=list)
    #: Every checkable claim in the bot's message (amounts, percentages, numbers, codes, plan
    #: names, URLs, emails, phones) must be in the turn's sources (policy/grounding.py); a
    #: reply that is not is rewritten from the retrieved answer, or to the ``default`` template
    #: (``ungrounded_claim``), a proactive message is not sent.
    grounding: bool = True
    #: Safe replies used when a reply is rewritten; key = reason code, ``default`` required.
    templates: dict[str, str] = Field(
        default_factory=lambda: {
            "default": "I can't help with that here, but I can connect you with our team."
        }
    )

    @field_validator("templates")
    @classmethod
    def _default_template(cls, value: dict[str, str]) -> dict[str, str]:
        if "default" not in value:
            raise ValueError("content templates need a 'default' entry")
        return value


class SecretPattern(Strict):
    """A kind of secret masked wherever a customer types it, like card numbers."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    #: A regular expression (case-insensitive) for the whole secret.
    pattern: Regex
    #: Digits of it kept so a person can still refer to it: ``[us_ssn ending 6789]``.
    keep_last: int = Field(0, ge=0, le=8)


class PrivacyPolicy(Strict):
    """What is masked at ingress: before anything is stored, embedded, prompted or logged."""

    #: Payment card numbers (13-19 digits passing the Luhn check): ``[card ending 1111]``.
    mask_card_numbers: bool = True
    secrets: list[SecretPattern] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> PrivacyPolicy:
        unique_names("secret", [p.name for p in self.secrets])
        return self
