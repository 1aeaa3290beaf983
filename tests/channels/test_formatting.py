"""SMS segment counting and the composed email."""

from __future__ import annotations

from typing import Any

import pytest

from channels.base import Delivery
from channels.formatting import compose_email, sms_segments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (0, "GSM-7")),
        ("Hello!", (1, "GSM-7")),
        ("a" * 160, (1, "GSM-7")),
        ("a" * 161, (2, "GSM-7")),
        ("a" * 306, (2, "GSM-7")),
        ("a" * 307, (3, "GSM-7")),
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", (1, "GSM-7")),
        # extension-table characters cost two septets each
        ("€" * 80, (1, "GSM-7")),
        ("€" * 81, (2, "GSM-7")),
        ("a" * 159 + "€", (2, "GSM-7")),
        ("a" * 158 + "[", (1, "GSM-7")),
        # an escape pair is not split: 152 + 2 does not fit a 153-septet segment
        ("a" * 152 + "{" + "a" * 10, (2, "GSM-7")),
        ("a" * 152 + "{" + "a" * 153, (3, "GSM-7")),
        # one character outside GSM-7 makes the whole message UCS-2
        ("ж" * 70, (1, "UCS-2")),
        ("ж" * 71, (2, "UCS-2")),
        ("ж" * 134, (2, "UCS-2")),
        ("ж" * 135, (3, "UCS-2")),
        ("a" * 69 + "“", (1, "UCS-2")),
        ("a" * 70 + "“", (2, "UCS-2")),
        # an emoji outside the BMP is two UTF-16 code units, never split across segments
        ("😀" * 35, (1, "UCS-2")),
        ("😀" * 36, (2, "UCS-2")),
        ("a" * 68 + "😀", (1, "UCS-2")),
        ("a" * 69 + "😀", (2, "UCS-2")),
        ("😀" * 67, (3, "UCS-2")),
    ],
)
def test_sms_segments(text: str, expected: tuple[int, str]) -> None:
    assert sms_segments(text) == expected


def delivery(**overrides: Any) -> Delivery:
    fields: dict[str, Any] = {
        "outbox_id": "out_1", "message_id": "msg_1", "idempotency_key": "key-1",
        "customer_id": "cus_1", "conversation_id": "con_1", "channel": "email",
        "address": "dana@northwind.example", "text": "Your invoice is attached.",
        "purpose": "service", "company": "Acme",
    }
    return Delivery(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("overrides", "subject"),
    [
        ({"is_reply": True, "subject": "Pricing question"}, "Re: Pricing question"),
        ({"is_reply": True, "subject": "Re: Pricing question"}, "Re: Pricing question"),
        ({"is_reply": True, "subject": "RE:  Pricing\n question"}, "RE: Pricing question"),
        ({"is_reply": True}, "A note from Acme"),
        ({"subject": "Your March invoice"}, "Your March invoice"),
        ({}, "A note from Acme"),
        ({"company": ""}, "A note from our team"),
    ],
)
def test_email_subject(overrides: dict[str, Any], subject: str) -> None:
    assert compose_email(delivery(**overrides))[0] == subject


def test_email_body_signs_off_and_marketing_offers_a_way_out() -> None:
    _, body = compose_email(delivery(text="  Thanks, Dana!  "))
    assert body == "Thanks, Dana!\n\nBest regards,\nThe Acme team\n"
    _, marketing = compose_email(delivery(purpose="marketing", text="Our spring sale is on."))
    assert marketing.startswith("Our spring sale is on.\n\nBest regards,\nThe Acme team\n")
    assert "Reply STOP to stop these emails." in marketing
    assert "STOP" not in body
