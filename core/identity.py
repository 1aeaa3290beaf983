"""Identities in one canonical form, so one person is one profile however they are written.

- A phone becomes E.164 (``+14155550177``) with ``phonenumbers``: ``+1 (415) 555-0177``,
  ``415-555-0177`` and ``+14155550177`` are one number. A number written without its country
  code is read in the default region (``JOURNEY_DEFAULT_PHONE_REGION``, ``US`` unless set).
  A number of impossible length for its country is refused; whether the number is in service
  is not checked (carriers know, the library cannot).
- An email is validated with ``email-validator`` (syntax, a real domain form; no DNS lookup)
  and compared lower-cased: mail systems treat the local part case-insensitively in practice.
- Other identities (web-chat id, CRM id) are kept as given, trimmed.

A value that cannot be made canonical raises ``InvalidIdentity`` (a ``ValueError``: inside a
pydantic model it becomes a 422 naming the field).
"""

from __future__ import annotations

from typing import Annotated

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator

#: The region a phone number without ``+<country code>`` is read in (ISO 3166 alpha-2).
_default_region = "US"


class InvalidIdentity(ValueError):
    """The value is not an identity of its kind."""


def phone_region(region: str) -> str:
    """``region`` upper-cased, if phonenumbers knows it (else :class:`InvalidIdentity`)."""
    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidIdentity(f"{region!r} is not a region phonenumbers knows (e.g. US, GB, DE)")
    return region.upper()


def set_default_region(region: str) -> None:
    """The region for numbers written without a country code (the wiring sets it)."""
    global _default_region
    _default_region = phone_region(region)


def default_region() -> str:
    """The region for numbers written without a country code."""
    return _default_region


def normal_phone(value: str, region: str | None = None) -> str:
    """``value`` as E.164, or :class:`InvalidIdentity`."""
    text = value.strip()
    try:
        number = phonenumbers.parse(text, region or _default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity(f"{value!r} is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentity(
            f"{value!r} is not a phone number (wrong length for its country; write it as "
            "+<country code><number>)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normal_email(value: str) -> str:
    """``value`` validated and lower-cased, or :class:`InvalidIdentity`."""
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidIdentity(f"{value.strip()!r} is not an email address: {exc}") from None
    return checked.normalized.lower()


def normal_identity(kind: str, value: str) -> str:
    """The canonical form of an identity of ``kind``."""
    if kind == "phone":
        return normal_phone(value)
    if kind == "email":
        return normal_email(value)
    return value.strip()


#: A phone field of a request: validated and stored as E.164.
PhoneNumber = Annotated[str, AfterValidator(normal_phone)]
#: An email field of a request: validated and stored lower-cased.
EmailAddress = Annotated[str, AfterValidator(normal_email)]
