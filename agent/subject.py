"""What the conversation is about, so a follow-up that refers back resolves.

"What does the Starter plan include?" on web chat, then "Does it include WhatsApp?" by email:
the second message alone reads as a question about any plan (the nearest knowledge entry is
Growth's). The conversation follows the customer across channels, so its subject is read off
what the customer wrote in it, latest mention first: the plan, the product or integration, the
order (or invoice, ticket) and the seats. A message that refers back ("it", "that plan", "the
order") and does not name one itself is *resolved*: the subject is made explicit for the
classifier and the knowledge lookup ("Does it include WhatsApp? (Starter plan)"), and the
model is told the subject. Only the customer's words count: the bot's replies name other plans
("for WhatsApp, look at Growth") that are not what the customer is asking about.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: words that refer back to something said before: to a plan, to an order, to whatever it was
_PLAN_REF = re.compile(r"\b(that|this|the|my|same) (plan|tier|subscription)\b", re.I)
_ORDER_REF = re.compile(r"\b(that|this|the|my) (order|invoice|ticket|case)\b", re.I)
_IT = re.compile(r"\b(it|its|it's|that one|this one|them)\b", re.I)
#: a follow-up is short; a longer message that says "it" is about something it says itself
MAX_WORDS = 15
_ORDER = re.compile(
    r"\b(order|invoice|ticket|case)\s*(?:number|no\.?|#)?\s*#?\s*([A-Z]{0,4}-?\d{3,})\b",
    re.IGNORECASE)


def _names(names: Sequence[str]) -> re.Pattern[str] | None:
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"\b({alternatives})\b", re.IGNORECASE)


class SubjectReader:
    """Reads the subject of a conversation with the company's catalogue (plans, products)."""

    def __init__(self, plans: Sequence[str], products: Sequence[str]) -> None:
        self.plans = {p.casefold(): p for p in plans}
        self.products = {p.casefold(): p for p in products}
        self._plan = _names(plans)
        self._product = _names(products)

    def mentions(self, text: str) -> dict[str, str]:
        """The plan, product and order ``text`` names itself (the last of each)."""
        found: dict[str, str] = {}
        for kind, pattern, canon in (("plan", self._plan, self.plans),
                                     ("product", self._product, self.products)):
            if pattern is not None:
                hits = pattern.findall(text)
                if hits:
                    found[kind] = canon[hits[-1].casefold()]
        orders = _ORDER.findall(text)
        if orders:
            kind, number = orders[-1]
            found["order"] = f"{kind.lower()} {number}"
        return found

    def subject(self, said: Sequence[str], seats: Sequence[int | None] = ()) -> dict[str, Any]:
        """The conversation's subject from the customer's messages, oldest first: the latest
        mention of each kind (and the latest seats read off them)."""
        subject: dict[str, Any] = {}
        for text in said:
            subject.update(self.mentions(text))
        for count in seats:
            if count:
                subject["seats"] = count
        return subject

    def resolve(self, text: str, subject: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``text`` with what it refers back to made explicit, and what was added (empty when
        the message names its own subject, does not refer back, or is not a short follow-up).
        "That plan" is the plan, "the order" the order, "it" the plan, else the product, else
        the order the customer named last."""
        if not subject or len(text.split()) > MAX_WORDS:
            return text, {}
        own = self.mentions(text)
        added: dict[str, Any] = {}
        for kind, ref in (("plan", _PLAN_REF), ("order", _ORDER_REF)):
            if kind in subject and kind not in own and ref.search(text):
                added[kind] = subject[kind]
        if not added and _IT.search(text):
            salient = next((k for k in ("plan", "product", "order")
                            if k in subject and k not in own), None)
            if salient is not None:
                added[salient] = subject[salient]
        if not added:
            return text, {}
        said = "; ".join(f"{v} plan" if k == "plan" else str(v) for k, v in added.items())
        return f"{text} ({said})", added
