"""Promise: an opt-out is an opt-out however it is typed: full-width letters, spaced letters,
punctuation, any case, the carrier-standard keywords and the policy's other languages.

Each customer texts one form of STOP through a signed Twilio webhook to the real server; the
worker runs the turn and the relay: their SMS consent is revoked and the one message they get
is the opt-out confirmation.
"""

from __future__ import annotations

import pytest

from core.domain import CustomerProfile, Identity
from tests.providers import FakeTwilio
from tests.server import drain, one_worker
from tests.trust.conftest import TWILIO_INBOUND, Served, ServeFactory, twilio_settings

FORMS = (
    "ＳＴＯＰ", "S T O P", "s.t.o.p", "Stop!!", " stop. ", "STOPALL", "unsubscribe", "Cancel",
    "END", "quit", "S\u200bTOP", "BAJA", "Arrêt", "ARRET", "STOPP",
)
NOT_OPT_OUTS = ("stop by the office tomorrow?", "the end of the month works", "Baja California")


def _texted(served: Served, twilio: FakeTwilio, texts: tuple[str, ...]
            ) -> dict[str, tuple[str, CustomerProfile]]:
    """Each text sent by its own phone through the webhook, the turns and the relay run:
    phone → (text, the sender's profile)."""
    phones = {f"+1415555{i:04d}": text for i, text in enumerate(texts)}
    for phone, text in phones.items():
        assert twilio.send_inbound(served.base + TWILIO_INBOUND, phone, text).status_code == 200
    drain(one_worker(served.container))
    found = {}
    for phone, text in phones.items():
        profile = served.container.store.find_customer(Identity(kind="phone", value=phone))
        assert profile is not None
        found[phone] = (text, profile)
    return found


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_form_of_stop_revokes_sms_consent(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    served = serve(**twilio_settings(twilio))
    confirmation = served.container.policy.get().contact.consent.opt_out_confirmation
    for phone, (text, profile) in _texted(served, twilio, FORMS).items():
        assert profile.consent_for("sms") == "revoked", f"{text!r} did not opt out"
        assert [m["body"] for m in twilio.messages if m["to"] == phone] == [confirmation], text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_words_that_only_contain_a_keyword_do_not_opt_out(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    served = serve(**twilio_settings(twilio))
    for text, profile in _texted(served, twilio, NOT_OPT_OUTS).values():
        assert profile.consent_for("sms") != "revoked", text
