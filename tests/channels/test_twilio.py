"""TwilioAdapter against FakeTwilio (a real HTTP server), and Twilio's signature."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from channels.base import Delivery, PermanentError, TransientError
from channels.twilio import TwilioAdapter, twilio_signature, valid_twilio_signature
from core.settings import Settings
from tests.providers import FakeTwilio


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def settings(tmp_path: Path, base_url: str, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "data_dir": tmp_path, "twilio_base_url": base_url,
        "twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": "tw-token",
        "twilio_sms_from": "+14155550199", "twilio_whatsapp_from": "+14155550198",
        "public_url": "https://journey.example.com/", "provider_timeout_s": 2.0,
    }
    return Settings(_env_file=None, **{**fields, **overrides})  # type: ignore[call-arg]


def delivery(**overrides: Any) -> Delivery:
    fields: dict[str, Any] = {
        "outbox_id": "out_1", "message_id": "msg_1", "idempotency_key": "dec_9:0",
        "customer_id": "cus_1", "conversation_id": "con_1", "channel": "sms",
        "address": "+14155550100", "text": "Your order has shipped.", "purpose": "transactional",
    }
    return Delivery(**{**fields, **overrides})


def test_sends_an_sms(tmp_path: Path, twilio: FakeTwilio) -> None:
    adapter = TwilioAdapter(settings(tmp_path, twilio.base_url), "sms")
    result = adapter.send(delivery())

    [sent] = twilio.messages
    assert sent == {
        "sid": result.provider_message_id, "to": "+14155550100", "from": "+14155550199",
        "body": "Your order has shipped.",
        "status_callback": "https://journey.example.com/v1/channels/twilio/status",
        "idempotency_key": "dec_9:0",
    }
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith("SM")
    assert result.provider_status == "queued"
    assert result.meta == {"segments": 1, "encoding": "GSM-7", "to": "+14155550100"}


def test_whatsapp_prefixes_both_numbers(tmp_path: Path, twilio: FakeTwilio) -> None:
    adapter = TwilioAdapter(settings(tmp_path, twilio.base_url, public_url=""), "whatsapp")
    result = adapter.send(delivery(channel="whatsapp", text="Olá! 👋"))
    [sent] = twilio.messages
    assert (sent["to"], sent["from"]) == ("whatsapp:+14155550100", "whatsapp:+14155550198")
    assert sent["status_callback"] is None  # no public URL: Twilio has nowhere to call
    assert result.meta["encoding"] == "UCS-2"


def test_a_retry_after_a_lost_answer_is_not_sent_twice(
    tmp_path: Path, twilio: FakeTwilio
) -> None:
    adapter = TwilioAdapter(settings(tmp_path, twilio.base_url), "sms")
    twilio.fail_after_rate = 1.0  # Twilio sends the message, then the answer is a 500
    with pytest.raises(TransientError, match="Twilio answered 500"):
        adapter.send(delivery())
    twilio.fail_after_rate = 0.0
    result = adapter.send(delivery(attempt=2))
    assert len(twilio.messages) == 1
    assert twilio.replays == 1
    assert result.provider_message_id == twilio.messages[0]["sid"]


def test_failures_before_processing_are_transient_and_retried(
    tmp_path: Path, twilio: FakeTwilio
) -> None:
    adapter = TwilioAdapter(settings(tmp_path, twilio.base_url), "sms")
    twilio.down = True
    with pytest.raises(TransientError, match="Twilio answered 503"):
        adapter.send(delivery())
    twilio.down = False
    twilio.fail_rate = 1.0
    with pytest.raises(TransientError, match="Twilio answered 500"):
        adapter.send(delivery())
    assert twilio.messages == []
    twilio.fail_rate = 0.0
    adapter.send(delivery())
    assert len(twilio.messages) == 1


def test_client_errors_are_permanent_with_twilios_code(tmp_path: Path, twilio: FakeTwilio) -> None:
    twilio.invalid_numbers.add("+14155550111")
    adapter = TwilioAdapter(settings(tmp_path, twilio.base_url), "sms")
    with pytest.raises(PermanentError, match=r"400 \(error 21211\).*\+14155550111"):
        adapter.send(delivery(address="+14155550111"))
    wrong_token = TwilioAdapter(
        settings(tmp_path, twilio.base_url, twilio_auth_token="wrong"), "sms"
    )
    with pytest.raises(PermanentError, match=r"401 \(error 20003\): Authenticate"):
        wrong_token.send(delivery())
    assert twilio.messages == []


def test_unreachable_or_slow_twilio_is_transient(
    tmp_path: Path, refusing_port: int, silent_port: int
) -> None:
    refused = TwilioAdapter(settings(tmp_path, f"http://127.0.0.1:{refusing_port}"), "sms")
    with pytest.raises(TransientError, match="Twilio unreachable: ConnectError"):
        refused.send(delivery())
    slow = TwilioAdapter(
        settings(tmp_path, f"http://127.0.0.1:{silent_port}", provider_timeout_s=0.3), "sms"
    )
    with pytest.raises(TransientError, match="Twilio unreachable: ReadTimeout"):
        slow.send(delivery())


def test_needs_its_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="twilio_whatsapp_from"):
        TwilioAdapter(settings(tmp_path, "http://x", twilio_whatsapp_from=""), "whatsapp")
    with pytest.raises(ValueError, match="twilio_account_sid, twilio_auth_token"):
        TwilioAdapter(settings(tmp_path, "http://x", twilio_account_sid="",
                               twilio_auth_token=""), "sms")


# --- the signature ---------------------------------------------------------------------------

DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        # twilio.com/docs/usage/security, "Validating Signatures from Twilio", today's example
        ("+14158675310", "GvWf1cFY/Q7PnoempGyD5oXAezc="),
        # the same page's earlier edition (and Twilio's helper-library tests)
        ("+12349013030", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
    ],
)
def test_twilio_documented_examples(caller: str, expected: str) -> None:
    params = {"CallSid": "CA1234567890ABCDE", "Caller": caller, "Digits": "1234",
              "From": caller, "To": "+18005551212"}
    assert twilio_signature("12345", DOC_URL, params) == expected
    assert valid_twilio_signature("12345", DOC_URL, params, expected)
    # the order the parameters arrive in does not matter
    assert valid_twilio_signature("12345", DOC_URL, dict(reversed(params.items())), expected)


def test_a_signature_binds_token_url_and_every_parameter() -> None:
    params = {"From": "+14155550100", "Body": "hi", "MessageSid": "SM1"}
    signature = twilio_signature("secret", "https://a.example/hook", params)
    assert valid_twilio_signature("secret", "https://a.example/hook", params, signature)
    # a proxy may add or drop the default port
    assert valid_twilio_signature("secret", "https://a.example:443/hook", params, signature)
    assert not valid_twilio_signature("other", "https://a.example/hook", params, signature)
    assert not valid_twilio_signature("secret", "http://a.example/hook", params, signature)
    assert not valid_twilio_signature("secret", "https://a.example/hook2", params, signature)
    assert not valid_twilio_signature(
        "secret", "https://a.example/hook", {**params, "Body": "hi!"}, signature
    )
    assert not valid_twilio_signature(
        "secret", "https://a.example/hook", {**params, "Extra": ""}, signature
    )
    assert not valid_twilio_signature("secret", "https://a.example/hook", params, "")
    assert not valid_twilio_signature("", "https://a.example/hook", params, signature)


def test_repeated_parameters_are_signed_value_by_value() -> None:
    one_order = {"MediaUrl": ["https://m/2", "https://m/1"], "To": "+1"}
    other_order = {"To": "+1", "MediaUrl": ["https://m/1", "https://m/2"]}
    signature = twilio_signature("t", "https://a.example/", one_order)
    assert signature == twilio_signature("t", "https://a.example/", other_order)
    assert signature != twilio_signature("t", "https://a.example/", {"MediaUrl": ["https://m/1"],
                                                                     "To": "+1"})


def test_retrying_through_a_flaky_twilio_sends_each_message_exactly_once(
    tmp_path: Path,
) -> None:
    with FakeTwilio(fail_rate=0.3, fail_after_rate=0.3, seed=7) as flaky:
        adapter = TwilioAdapter(settings(tmp_path, flaky.base_url), "sms")
        sids = []
        for n in range(20):
            for _attempt in range(50):
                try:
                    result = adapter.send(delivery(idempotency_key=f"dec_{n}:0", text=f"#{n}"))
                except TransientError:
                    continue
                sids.append(result.provider_message_id)
                break
        adapter.close()
    assert [m["body"] for m in flaky.messages] == [f"#{n}" for n in range(20)]
    assert sids == [m["sid"] for m in flaky.messages]
    assert flaky.replays > 0 and flaky.calls > 20  # the failures did happen
