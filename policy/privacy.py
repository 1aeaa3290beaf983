"""Masking at ingress: what a customer types that nobody should keep.

A card number typed into a chat would otherwise be kept in the message, the decision, the
handoff summary, the LangGraph checkpoint, the vector store and the model's prompt. So every
text that comes in — a message on any channel, an email's subject, an event's properties and
traits, a name — is masked by :func:`mask` before anything else sees it, with the policy's
``privacy`` section: payment card numbers (13-19 digits passing the Luhn check) become
``[card ending 1111]``, each configured secret ``[<name> ending 6789]`` (or ``[<name>]``).

The customer's other characters are kept exactly as written (no normalisation); card digits
are recognised in any script (``\\d`` matches full-width digits too).
"""

from __future__ import annotations

import re
from functools import lru_cache, partial
from typing import Any

from policy.content import mask_cards
from policy.model import PrivacyPolicy, SecretPattern


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _label(secret: SecretPattern, found: str) -> str:
    digits = re.sub(r"\D", "", found)
    if secret.keep_last and len(digits) > secret.keep_last:
        return f"[{secret.name} ending {digits[-secret.keep_last:]}]"
    return f"[{secret.name}]"


def mask(text: str, privacy: PrivacyPolicy) -> str:
    """``text`` with card numbers and the policy's secrets masked."""
    if privacy.mask_card_numbers:
        text = mask_cards(text)
    for secret in privacy.secrets:
        text = _compiled(secret.pattern).sub(partial(_replace, secret), text)
    return text


def _replace(secret: SecretPattern, m: re.Match[str]) -> str:
    return _label(secret, m.group(0))


def mask_all(value: Any, privacy: PrivacyPolicy) -> Any:
    """Every string in ``value`` (nested dicts and lists, keys too) masked."""
    if isinstance(value, str):
        return mask(value, privacy)
    if isinstance(value, dict):
        return {mask_all(k, privacy): mask_all(v, privacy) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_all(v, privacy) for v in value]
    return value
