"""Content rules on outbound text: offers beyond the limits, forbidden claims, other people's
personal data, card numbers, and the channel's format and length.

:func:`violations` finds what is wrong; :func:`fit_to_channel` makes allowed text fit.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from policy.model import ChannelPolicy, ContentPolicy

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w+])(\+\d[\d\s().-]{6,}\d|\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4})(?!\w)")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_UNITS = {
    w: i for i, w in enumerate([
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen",
    ])
}
_TENS = {w: 10 * (i + 2) for i, w in enumerate(
    ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
)}
_WORD_NUMBER = (
    r"(?:(?:one\s+)?hundred|(?:" + "|".join(_TENS) + r")(?:[\s-](?:" + "|".join(_UNITS)
    + r"))?|" + "|".join(sorted(_UNITS, key=len, reverse=True)) + r")"
)
_PERCENT = re.compile(
    r"(\d{1,3}(?:\.\d+)?|\b" + _WORD_NUMBER + r")\s?(?:%|percent\b|per\s?cent\b)",
    re.IGNORECASE,
)
_OFFER_WORDS = re.compile(
    r"\b(off|discount(?:ed|s)?|coupon|promo(?:tion)?|code|reduction|reduced|cheaper|save|"
    r"savings?|markdown|deal)\b",
    re.IGNORECASE,
)
#: A number, optionally with a currency before or after it; not a duration, count or percent.
_AMOUNT = re.compile(
    r"(?<![\w.,])(?:[$€£]\s?|\b(?:USD|EUR|GBP)\s?)?(\d[\d,]*(?:\.\d+)?)(\s?[kK]\b)?"
    r"(?!\s?(?:%|per\s?cent|percent|days?|weeks?|months?|years?|hours?|minutes?|seats?|"
    r"users?|journeys?|GB|MB|x\b|[-/]\d|\.\d))",
    re.IGNORECASE,
)
_CREDIT_WORDS = re.compile(
    r"\b(credit\w*(?!\s+card)|refund(?:ed|s)?|compensat\w*|reimburs\w*|voucher|"
    r"goodwill|money\s+back|bucks|quid|off\s+your\s+(?:next\s+)?(?:bill|invoice))\b",
    re.IGNORECASE,
)
_BARE_PHONE = re.compile(r"(?<![\w+.,$€£])\d{10,15}(?![\w,]|\.\d)")
_NEAR = 40  # characters around a number in which an offer word makes it an offer

_MD_LINK = re.compile(r"\[([^\]]+)\]\((\S+?)\)")
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE)
_MD_BULLET = re.compile(r"^\s*[-*+]\s+", re.MULTILINE)


@dataclass(frozen=True)
class Violation:
    code: str
    detail: str
    #: ``rewrite``: a reply is replaced by a safe template; ``block``: it is not sent at all.
    #: A proactive message with any violation is blocked.
    on_violation: str = "rewrite"


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _luhn(number: str) -> bool:
    total, parity = 0, len(number) % 2
    for i, ch in enumerate(number):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _near(text: str, start: int, end: int, words: re.Pattern[str]) -> bool:
    return bool(words.search(text[max(0, start - _NEAR) : end + _NEAR]))


def _amount(raw: str, thousands: str | None) -> float:
    value = float(raw.replace(",", ""))
    return value * 1000 if thousands else value


def _number(raw: str) -> float:
    """``"90"``, ``"12.5"``, ``"ninety"``, ``"twenty-five"`` as a number."""
    token = raw.lower().strip()
    if token[0].isdigit():
        return float(token.replace(",", ""))
    words = re.split(r"[\s-]+", token)
    if words[-1] == "hundred":
        return 100.0
    return float(sum(_TENS.get(w, 0) + _UNITS.get(w, 0) for w in words))


#: What makes a proactive message promotional (hence marketing, whatever the model labels it).
#: Deliberately broad: a false alarm only asks for marketing consent.
_PROMOTIONAL = re.compile(
    r"\b(discount\w*|coupon\w*|promo\w*|sales?|deals?|offers?|save|saving\w*|bargain\w*|"
    r"off\s+(?:your|the|all|any|every)|half[- ]price|free\s+(?:month|months|upgrade|gift)|"
    r"upgrade\s+(?:now|today)|limited[- ]time|exclusive|special|black\s+friday|"
    r"cyber\s+monday|don'?t\s+miss|last\s+chance|ends?\s+(?:soon|today|friday|tonight))\b",
    re.IGNORECASE,
)


def is_promotional(text: str) -> bool:
    text = normalise(text)
    return bool(_PROMOTIONAL.search(text) or _PERCENT.search(text))


def normalise(text: str) -> str:
    """Compatibility forms folded (full-width digits, ligatures), so look-alikes are caught."""
    return unicodedata.normalize("NFKC", text)


def violations(text: str, policy: ContentPolicy, own_contacts: Iterable[str]) -> list[Violation]:
    """Everything in ``text`` the content policy forbids (empty: the text may go out)."""
    text = normalise(text)
    found: list[Violation] = []
    allowed_emails = {c.lower() for c in [*own_contacts, *policy.allowed_contacts] if "@" in c}
    allowed_phones = {
        _digits(c) for c in [*own_contacts, *policy.allowed_contacts] if "@" not in c
    }
    allowed_phones.discard("")

    for m in _CARD.finditer(text):
        digits = _digits(m.group(0))
        if 13 <= len(digits) <= 19 and _luhn(digits):
            found.append(Violation("payment_card_number", "a payment card number"))
            break
    for m in _EMAIL.finditer(text):
        if m.group(0).lower().rstrip(".") not in allowed_emails:
            found.append(Violation("foreign_personal_data", f"email {m.group(0)}"))
            break
    phones = [*_PHONE.finditer(text), *_BARE_PHONE.finditer(text)]
    for m in phones:
        digits = _digits(m.group(0))
        if len(digits) >= 7 and not any(
            digits.endswith(p[-9:]) or p.endswith(digits[-9:]) for p in allowed_phones
        ) and not (13 <= len(digits) <= 19 and _luhn(digits)):
            found.append(Violation("foreign_personal_data", f"phone number {m.group(0)}"))
            break

    for m in _PERCENT.finditer(text):
        pct = _number(m.group(1))
        if pct > policy.max_discount_percent and _near(text, m.start(), m.end(), _OFFER_WORDS):
            found.append(
                Violation(
                    "discount_over_limit",
                    f"{pct:g}% > the {policy.max_discount_percent:g}% the bot may offer",
                )
            )
            break
    for m in _AMOUNT.finditer(text):
        amount = _amount(m.group(1), m.group(2))
        if amount > policy.max_credit and _near(text, m.start(), m.end(), _CREDIT_WORDS):
            found.append(
                Violation(
                    "credit_over_limit",
                    f"{amount:g} > the {policy.max_credit:g} credit the bot may offer",
                )
            )
            break
    for rule in policy.forbidden:
        hit = _compiled(rule.pattern).search(text)
        if hit:
            found.append(
                Violation(f"forbidden_claim:{rule.name}", f"{hit.group(0)!r}", rule.on_violation)
            )
    return found


def mask_cards(text: str) -> str:
    """``text`` with payment card numbers (Luhn-checked) masked, keeping the last 4 digits;
    nothing else is changed."""

    def mask(m: re.Match[str]) -> str:
        digits = "".join(str(int(d)) for d in _digits(m.group(0)))  # any script's digits
        if 13 <= len(digits) <= 19 and _luhn(digits):
            return f"[card ending {digits[-4:]}]"
        return m.group(0)

    return _CARD.sub(mask, text)


def redact_cards(text: str) -> str:
    """``text`` normalised, with payment card numbers masked (for what the bot writes)."""
    return mask_cards(normalise(text))


#: A customer's message shorter than this is not treated as a quote (common short phrases).
MIN_QUOTE = 8


def unquoted(text: str, quotes: Iterable[str]) -> str:
    """``text`` without the customer's own words: a CRM note or handoff summary may quote what
    the customer wrote ("wants 30% off"), which is not the bot saying it. Whole messages are
    cut out; a text that is itself a piece of one of them is nothing of the bot's."""
    text = normalise(text)
    stripped = text.strip()
    for quote in sorted({normalise(q).strip() for q in quotes}, key=len, reverse=True):
        if len(quote) < MIN_QUOTE:
            continue
        if stripped and stripped in quote:
            return ""
        text = text.replace(quote, " ")
    return text


def safe_text(policy: ContentPolicy, found: list[Violation]) -> str:
    """The safe template for the first violation that has one, else the default."""
    for v in found:
        key = v.code.split(":", 1)[0]
        if v.code in policy.templates:
            return policy.templates[v.code]
        if key in policy.templates:
            return policy.templates[key]
    return policy.templates["default"]


def strip_markdown(text: str) -> str:
    text = _MD_LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})", text)
    text = _MD_HEADING.sub("", text)
    text = _MD_BULLET.sub("- ", text)
    previous = None
    while previous != text:
        previous, text = text, _MD_EMPHASIS.sub(r"\2", text)
    return text


def trim(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, at a sentence end when one is near."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    for sep in (". ", "! ", "? ", "\n"):
        pos = cut.rfind(sep)
        if pos > limit // 2:
            return cut[: pos + 1].rstrip()
    return cut.rstrip() + "…"


def fit_to_channel(text: str, channel: ChannelPolicy) -> tuple[str, list[str]]:
    """The text as the channel can show it, and what was changed (``reformat``, ``trim``)."""
    changes: list[str] = []
    if not channel.markdown:
        plain = strip_markdown(text)
        if plain != text:
            text = plain
            changes.append("reformat")
    if len(text) > channel.max_chars:
        text = trim(text, channel.max_chars)
        changes.append("trim")
    return text, changes


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def repeats(text: str, said: Sequence[str], threshold: float = 0.8) -> str | None:
    """The earlier message ``text`` (nearly) repeats, or None: the same words in the same order
    (difflib ratio at least ``threshold``), or one containing the other when it is long."""
    mine = _plain(text)
    for earlier in said:
        theirs = _plain(earlier)
        if not mine or not theirs:
            continue
        shorter, longer = sorted((mine, theirs), key=len)
        if len(shorter) >= 30 and shorter in longer:
            return earlier
        if difflib.SequenceMatcher(None, mine, theirs, autojunk=False).ratio() >= threshold:
            return earlier
    return None
