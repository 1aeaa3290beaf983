"""Promise: an opt-out is an opt-out however it is typed: full-width letters, spaced letters,
punctuation, any case, the carrier-standard keywords and the policy's other languages.

Each customer texts one form of STOP through a signed Twilio webhook to the real server; the
worker runs the turn and the relay: their SMS consent is revoked and the one message they get
is the opt-out confirmation.
"""

from __future__ import annotations

import pytest

from journey.domain import Identity
from tests.providers import FakeTwilio
from tests.server import drain, one_worker
from tests.trust.conftest import TWILIO_INBOUND, ServeFactory, twilio_settings

FORMS = (
    "ＳＴＯＰ", "S T O P", "s.t.o.p", "Stop!!", " stop. ", "STOPALL", "unsubscribe", "Cancel",
    "END", "quit", "S\u200bTOP", "BAJA", "Arrêt", "ARRET", "STOPP",
)
NOT_OPT_OUTS = ("stop by the office tomorrow?", "the end of the month works", "Baja California")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_form_of_stop_revokes_sms_consent(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    served = serve(**twilio_settings(twilio))
    container = served.container
    url = served.base + TWILIO_INBOUND
    phones = {f"+1415555{i:04d}": text for i, text in enumerate(FORMS)}
    for phone, text in phones.items():
        assert twilio.send_inbound(url, phone, text).status_code == 200
    drain(one_worker(container))

    confirmation = container.policy.get().contact.consent.opt_out_confirmation
    for phone, text in phones.items():
        profile = container.store.find_customer(Identity(kind="phone", value=phone))
        assert profile is not None
        assert profile.consent_for("sms") == "revoked", f"{text!r} did not opt out"
        assert [m["body"] for m in twilio.messages if m["to"] == phone] == [confirmation], text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_words_that_only_contain_a_keyword_do_not_opt_out(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    served = serve(**twilio_settings(twilio))
    container = served.container
    url = served.base + TWILIO_INBOUND
    phones = {f"+1415556{i:04d}": text for i, text in enumerate(NOT_OPT_OUTS)}
    for phone, text in phones.items():
        assert twilio.send_inbound(url, phone, text).status_code == 200
    drain(one_worker(container))
    for phone, text in phones.items():
        profile = container.store.find_customer(Identity(kind="phone", value=phone))
        assert profile is not None and profile.consent_for("sms") != "revoked", text
