"""Grounding: every checkable claim in what the bot tells a customer is in the turn's sources. A
claim is something a customer could hold the company to: an amount or price, a percentage, a
date ("15 January", "Friday", "tomorrow"), a duration ("48 hours", "a 14-day trial"), a count or
any other number, a code (``VIP90``, an order number; a promo code such as ``ACMEVIP`` whatever
its letters), a plan or product name, a URL, an email address, a phone number. The sources are
the turn's: the knowledge the brain was given, the customer's profile, the conversation so far,
a journey's own template. A claim that none of them supports is *ungrounded*: the engine
rewrites the reply (``policy.rules_messages``) and the decision records which claim failed,
whatever the brain.

Matching is on values, not on wording: "$3,990", "3990" and "3.99k" are one number; an email
address or URL matches case-insensitively without trailing punctuation; a phone number matches
in E.164 form (``phonenumbers``), however it is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from core.domain import CustomerProfile

#: plan and product names: a capitalised name before one of these words is a claim
_PLAN_WORDS = r"plan|plans|tier|edition|package|subscription"
_NAMED_PLAN = re.compile(rf"\b([A-Z][\w+-]*)\s+(?:{_PLAN_WORDS})\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_NUMBER = re.compile(
    r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?:\s?([kKmM])\b)?(?![\w])")
_SCALES = {"k": 1_000, "m": 1_000_000}
#: a code: letters and digits together, an upper-case letter among them (VIP90, SAVE20, A1234)
_CODE = re.compile(r"\b(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Z])[A-Za-z0-9]{4,}\b")
#: a code named as a discount: "promo code ACMEVIP", "coupon: FREE2027", "voucher WELCOME-17"
_PROMO = re.compile(
    r"\b(?:promo(?:tion(?:al)?)?|coupon|voucher|discount|referral|gift)\s*(?:code)?s?"
    r"\s*(?:is|:)?\s*[\"'“‘]?(?-i:([A-Z0-9][A-Z0-9-]{3,}))\b", re.I)
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_MONTH = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|" \
         r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_DATE = re.compile(
    rf"\b(?:{_DAY}\s+(?:of\s+)?{_MONTH}|{_MONTH}\.?\s+{_DAY})\b|\b(\d{{4}})-(\d{{2}})-(\d{{2}})\b"
    r"|\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|tonight)\b",
    re.I)
_UNITS = {"minute": "minute", "min": "minute", "hour": "hour", "hr": "hour", "day": "day",
          "business day": "day", "working day": "day", "week": "week", "month": "month",
          "year": "year"}
_DURATION = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)[\s-]?(business day|working day|minute|min|hour|hr|day|week|"
    r"month|year)s?\b", re.I)
_CURRENCY_AFTER = re.compile(r"\s?(?:USD|EUR|GBP|dollars?|euros?|pounds?)\b", re.I)
_TRAILING = ".,;:!?"


@dataclass(frozen=True)
class Claim:
    kind: str  # amount, percentage, number, code, plan, url, email, phone
    text: str

    def __str__(self) -> str:
        return f"{self.kind} {self.text!r}"


def _date(m: re.Match[str]) -> str:
    """A date as one value: "15 January", "Jan 15th" and "2027-01-15" are "01-15"; a weekday
    or "tomorrow" is itself."""
    day_a, month_a, month_b, day_b, _, month_iso, day_iso, word = m.groups()
    if word:
        return word.casefold()
    if month_iso:
        return f"{int(month_iso):02d}-{int(day_iso):02d}"
    month = (month_a or month_b).casefold()[:3]
    index = next(i for i, name in enumerate(_MONTHS) if name.startswith(month)) + 1
    return f"{index:02d}-{int(day_a or day_b):02d}"


def _dates(text: str) -> set[str]:
    return {_date(m) for m in _DATE.finditer(text)}


def _duration(m: re.Match[str]) -> str:
    """A duration as one value: "48 hours", "48-hour" and "48 hrs" are "48 hour"."""
    return f"{float(m.group(1)):g} {_UNITS[m.group(2).casefold()]}"


def _durations(text: str) -> set[str]:
    return {_duration(m) for m in _DURATION.finditer(text)}


_CURRENCIES = {"$": "USD", "usd": "USD", "dollar": "USD", "dollars": "USD",
               "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR",
               "£": "GBP", "gbp": "GBP", "pound": "GBP", "pounds": "GBP"}


#: letters before a "$" that make it another currency's sign ("R$399" is reais)
_DOLLAR_PREFIX = re.compile(r"(?<![A-Za-z])([A-Z]{1,2})\$$")


def _value(m: re.Match[str]) -> float:
    """A matched number's value: "3,990" is 3990, "3.99k" is 3990."""
    return float(m.group(1).replace(",", "")) * _SCALES.get((m.group(2) or "").lower(), 1)


def _money(text: str, m: re.Match[str]) -> tuple[str, str] | None:
    """The number ``m`` as an amount: its text with the currency ("$399", "R$399", "399 USD")
    and the currency ("USD", "R$"…); None when no currency is written beside it."""
    before = text[max(0, m.start() - 1):m.start()]
    if before and before in "$€£":
        prefix = _DOLLAR_PREFIX.search(text, 0, m.start()) if before == "$" else None
        if prefix and prefix.group(1) != "US":  # R$ (reais), A$, C$, HK$: not dollars
            return prefix.group(0) + m.group(0), prefix.group(0)
        return (prefix.group(0) if prefix else before) + m.group(0), _CURRENCIES[before]
    after = _CURRENCY_AFTER.match(text, m.end())
    if after:
        return m.group(0) + after.group(0), _CURRENCIES[after.group(0).strip().casefold()]
    return None


def _amounts(text: str) -> set[tuple[str, float]]:
    """Amounts with their currency: "$399", "399 USD" and "399 dollars" are ("USD", 399)."""
    return {(money[1], _value(m)) for m in _NUMBER.finditer(text)
            if (money := _money(text, m)) is not None}


def _numbers(text: str) -> set[float]:
    return {_value(m) for m in _NUMBER.finditer(text)}


#: fewer digits than this hold no phone number: the matcher (slow) is not run
_PHONE_DIGITS = 7


def _has_phone_digits(text: str) -> bool:
    return sum(c.isdigit() for c in text) >= _PHONE_DIGITS


def _phones(text: str, region: str) -> set[str]:
    if not _has_phone_digits(text):
        return set()
    return {phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
            for m in phonenumbers.PhoneNumberMatcher(text, region)}


def _clean(value: str) -> str:
    return value.rstrip(_TRAILING).casefold()


@dataclass(frozen=True)
class _Read:
    numbers: frozenset[float]
    amounts: frozenset[tuple[str, float]]
    dates: frozenset[str]
    durations: frozenset[str]
    words: str  # every text, case-folded, for names
    urls: frozenset[str]
    emails: frozenset[str]
    phones: frozenset[str]

    @classmethod
    def of(cls, texts: Iterable[str], region: str) -> _Read:
        joined = "\n".join(t for t in texts if t)
        return cls(
            numbers=frozenset(_numbers(joined)),
            amounts=frozenset(_amounts(joined)),
            dates=frozenset(_dates(joined)),
            durations=frozenset(_durations(joined)),
            words=joined.casefold(),
            urls=frozenset(_clean(u) for u in _URL.findall(joined)),
            emails=frozenset(e.casefold() for e in _EMAIL.findall(joined)),
            phones=frozenset(_phones(joined, region)),
        )


@lru_cache(maxsize=8)
def read(texts: tuple[str, ...], region: str = "US") -> _Read:
    """``texts`` read once for grounding (cached: the knowledge base is the same every turn)."""
    return _Read.of(texts, region)


@dataclass(frozen=True)
class Sources:
    """What a turn may state. ``company``: the knowledge retrieved, the profile, a journey's
    template, what the bot and the people already told the customer. ``customer``: what the
    customer wrote, which supports counts, codes and their own contact details ("1,500
    users", "error 401"), never a price, a percentage, a plan or a link: a customer cannot
    make the bot confirm "Growth is $99" by saying it first."""

    company: tuple[_Read, ...]
    customer: _Read

    @classmethod
    def of(cls, company: Iterable[str], customer: Iterable[str] = (), region: str = "US",
           known: Sequence[str] = ()) -> Sources:
        """``known``: company texts that are the same every turn (the knowledge base), read
        once and cached."""
        reads: tuple[_Read, ...] = (_Read.of(company, region),)
        if known:
            reads += (read(tuple(known), region),)
        return cls(reads, _Read.of(customer, region))


def conversation_sources(profile: CustomerProfile, *, company_said: Iterable[str],
                         customer_said: Iterable[str], known: Sequence[str],
                         region: str = "US") -> Sources:
    """The sources of a reply to ``profile``: the company's (``known``: the knowledge given;
    the profile's name and attributes; ``company_said``: what the bot and people told the
    customer) and the customer's (``customer_said``, and their own contact details)."""
    company = [profile.name or "", *(f"{k} {v}" for k, v in profile.attributes.items()),
               *company_said]
    customer = [*customer_said, *(i.value for i in profile.identities)]
    return Sources.of(company, customer, region, known=known)


#: claims only the company's sources support
COMPANY_ONLY = ("amount", "percentage", "plan", "url", "date", "duration", "promo_code")
#: capitalised words before "plan" that are no plan's name
_NOT_NAMES = {"the", "our", "your", "this", "that", "each", "every", "any", "which", "what",
              "a", "an", "my", "their", "his", "her", "its", "one", "new", "current", "same",
              "paid", "other", "another", "right", "best", "monthly", "annual", "yearly"}
_LIST_MARKER = re.compile(r"(?m)^\s*\d{1,2}[.)]\s")


def claims(text: str, region: str = "US") -> list[Claim]:
    """The checkable claims in ``text``, in order of kind."""
    found: list[Claim] = []
    spans: list[tuple[int, int]] = []
    for phone in (phonenumbers.PhoneNumberMatcher(text, region)
                  if _has_phone_digits(text) else ()):
        found.append(Claim("phone", phone.raw_string))
        spans.append((phone.start, phone.end))
    for m in _URL.finditer(text):
        found.append(Claim("url", m.group(0).rstrip(_TRAILING)))
        spans.append(m.span())
    for m in _EMAIL.finditer(text):
        found.append(Claim("email", m.group(0)))
        spans.append(m.span())
    spans += [(m.start(), m.end()) for m in _LIST_MARKER.finditer(text)]  # "1. ", "2) "
    # a date, a duration or a promo code is judged as that, not as its digits
    for kind, pattern, group in (("date", _DATE, 0), ("duration", _DURATION, 0),
                                 ("promo_code", _PROMO, 1)):
        for m in pattern.finditer(text):
            if not any(a <= m.start(group) < b for a, b in spans):
                found.append(Claim(kind, m.group(group)))
                spans.append(m.span(group))
    for m in _NUMBER.finditer(text):
        if any(a <= m.start() < b for a, b in spans):
            continue  # a digit of a phone number, URL or address: judged as that
        money = _money(text, m)
        if money is not None:
            found.append(Claim("amount", money[0]))
        elif text[m.end():m.end() + 1] == "%":
            found.append(Claim("percentage", m.group(0) + "%"))
        else:
            found.append(Claim("number", m.group(0)))
    for m in _CODE.finditer(text):
        if not any(a <= m.start() < b for a, b in spans):
            found.append(Claim("code", m.group(0)))
    for m in _NAMED_PLAN.finditer(text):
        if m.group(1).casefold() not in _NOT_NAMES:
            found.append(Claim("plan", m.group(0)))
    return found


def _supports(read: _Read, claim: Claim, region: str) -> bool:
    if claim.kind == "phone":
        return bool(_phones(claim.text, region) & read.phones)
    if claim.kind == "url":
        url = _clean(claim.text)
        return url in read.urls or any(u.startswith(url) for u in read.urls)
    if claim.kind == "email":
        return claim.text.casefold() in read.emails
    if claim.kind == "amount":  # the value in the same currency: "€399" is not "$399"
        return bool(_amounts(claim.text)) and _amounts(claim.text) <= read.amounts
    if claim.kind == "date":
        return _dates(claim.text) <= read.dates
    if claim.kind == "duration":
        return _durations(claim.text) <= read.durations
    if claim.kind in ("plan", "code", "promo_code"):
        name = claim.text.split()[0].casefold()
        return re.search(rf"\b{re.escape(name)}\b", read.words) is not None
    return _numbers(claim.text) <= read.numbers


def unsupported(text: str, sources: Sources, region: str = "US",
                allowed_contacts: Sequence[str] = ()) -> list[Claim]:
    """The claims of ``text`` that ``sources`` do not support (the content policy's
    ``allowed_contacts`` are the company's own addresses)."""
    allowed = {c.casefold() for c in allowed_contacts}
    missing: list[Claim] = []
    for claim in claims(text, region):
        if claim.kind == "email" and claim.text.casefold() in allowed:
            continue
        if any(_supports(r, claim, region) for r in sources.company):
            continue
        if claim.kind not in COMPANY_ONLY and _supports(sources.customer, claim, region):
            continue
        missing.append(claim)
    return missing


@dataclass(frozen=True)
class Grounding:
    """What the engine checks a turn's messages against (``Facts.grounding``)."""

    sources: Sources
    #: the retrieved answer a rewritten reply becomes (None: the content policy's template)
    fallback: str | None = None
    region: str = "US"
    #: the knowledge entries retrieved for the message, (id, score), best first: recorded
    knowledge: tuple[tuple[str, float], ...] = ()
