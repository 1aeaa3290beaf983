"""How a message looks on the wire: SMS segment counts, an email's subject and body.

SMS segments are what a carrier bills: a GSM-7 text fits 160 characters in one segment and 153
per segment once it is split (the rest of each segment is the concatenation header); a character
of GSM-7's extension table (``€ [ ] { } ~ ^ | \\``, form feed) costs two, as it is sent as an
escape plus the character. One character outside GSM-7 (an emoji, "ł", curly quotes) switches the
whole message to UCS-2: 70 UTF-16 code units in one segment, 67 per segment once split, and an
emoji outside the BMP is two code units. An escape pair or a surrogate pair is never split across
two segments, so segments are packed greedily instead of divided.
"""

from __future__ import annotations

from channels.base import Delivery

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7 = "GSM-7"
UCS2 = "UCS-2"


def _pack(costs: list[int], single: int, multi: int) -> int:
    """Segments needed for characters of these costs: one if they fit ``single``, else greedy
    segments of ``multi`` units that never split a character."""
    total = sum(costs)
    if total <= single:
        return 1 if total else 0
    segments, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            segments, used = segments + 1, 0
        used += cost
    return segments


def sms_segments(text: str) -> tuple[int, str]:
    """(segments, encoding) of ``text`` as an SMS; an empty text is 0 segments."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        return _pack([2 if ch in GSM7_EXTENSION else 1 for ch in text], 160, 153), GSM7
    return _pack([2 if ord(ch) > 0xFFFF else 1 for ch in text], 70, 67), UCS2


def _company(delivery: Delivery) -> str:
    return delivery.company.strip() or "our team"


def email_subject(delivery: Delivery) -> str:
    """A reply answers the customer's subject ("Re: ..." once); a proactive message uses its own
    subject or a neutral default naming the company."""
    subject = " ".join((delivery.subject or "").split())
    if delivery.is_reply and subject:
        return subject if subject.lower().startswith("re:") else f"Re: {subject}"
    return subject or f"A note from {_company(delivery)}"


def compose_email(delivery: Delivery) -> tuple[str, str]:
    """(subject, plain-text body): the text, a sign-off, and for marketing a way out."""
    company = delivery.company.strip()
    sign_off = f"Best regards,\nThe {company} team" if company else "Best regards"
    body = f"{delivery.text.strip()}\n\n{sign_off}\n"
    if delivery.purpose == "marketing":
        body += "\nYou are receiving this because you opted in. Reply STOP to stop these emails.\n"
    return email_subject(delivery), body
