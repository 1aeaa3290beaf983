"""The HTTP API against a real uvicorn server: auth, validation, idempotency, read models."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from journey.runtime import Container
from tests.conftest import ContainerFactory
from tests.server import client, running_server


@pytest.fixture
def served(make_container: ContainerFactory) -> Iterator[tuple[Container, str]]:
    container = make_container()
    with running_server(container) as base:
        yield container, base


def body(text: str = "what does the Growth plan include?", **extra: object) -> dict[str, object]:
    return {
        "channel": "web_chat",
        "customer": {"web_chat_id": "wc_api", "email": "ana@example.com", "name": "Ana Diaz"},
        "text": text,
        **extra,
    }


def test_health_needs_no_key_and_reports_backends(served: tuple[Container, str]) -> None:
    container, base = served
    response = client(base, key=None).get("/v1/health")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "ok"
    assert data["brain"] == "rules"
    assert data["database"] == container.engine.dialect.name
    assert data["vector_memory"] == "chroma-embedded"


@pytest.mark.parametrize(
    ("key", "status", "detail"),
    [
        (None, 401, "missing API key"),
        ("nope", 401, "unknown API key"),
    ],
)
def test_endpoints_need_a_known_key(
    served: tuple[Container, str], key: str | None, status: int, detail: str
) -> None:
    _, base = served
    response = client(base, key=key).post("/v1/messages", json=body())
    assert response.status_code == status
    assert detail in response.json()["detail"]


def test_scopes_are_enforced(served: tuple[Container, str]) -> None:
    _, base = served
    writer = client(base, key="test-writer")
    posted = writer.post("/v1/messages", json=body())
    assert posted.status_code == 200
    denied = writer.get(f"/v1/customers/{posted.json()['customer_id']}")
    assert denied.status_code == 403
    assert "customers:read" in denied.json()["detail"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"channel": "web_chat", "customer": {}, "text": "hi"}, "give at least one identity"),
        ({"channel": "email", "customer": {"web_chat_id": "w"}, "text": "hi"},
         "messages need customer.email"),
        ({"channel": "fax", "customer": {"web_chat_id": "w"}, "text": "hi"}, "channel"),
        ({"channel": "web_chat", "customer": {"web_chat_id": "w"}, "text": "   "},
         "text is empty"),
        ({"channel": "web_chat", "customer": {"web_chat_id": "w"}, "text": "x" * 4001},
         "at most 4000 characters"),
        ({"channel": "web_chat", "customer": {"email": "not-an-email"}, "text": "hi"},
         "not an email address"),
    ],
)
def test_bad_input_gets_a_clear_422(
    served: tuple[Container, str], payload: dict[str, object], message: str
) -> None:
    container, base = served
    response = client(base).post("/v1/messages", json=payload)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert container.store.counts()["messages"] == 0


def test_malformed_json_is_a_4xx_not_a_500(served: tuple[Container, str]) -> None:
    _, base = served
    response = client(base).post(
        "/v1/messages", content=b'{"channel": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "JSON" in response.json()["detail"]


def test_repeated_external_id_returns_the_first_result(served: tuple[Container, str]) -> None:
    container, base = served
    http = client(base)
    first = http.post("/v1/messages", json=body(external_id="wc-msg-1"))
    second = http.post("/v1/messages", json=body(external_id="wc-msg-1"))
    assert first.status_code == second.status_code == 200
    a, b = first.json(), second.json()
    assert (a["duplicate"], b["duplicate"]) == (False, True)
    assert b["decision"] == a["decision"] and b["reply"] == a["reply"]
    assert container.store.inbound_count("web_chat", "wc-msg-1") == 1
    assert len(container.store.outbox(a["customer_id"])) == 1


def test_concurrent_deliveries_of_one_message_store_it_once(
    served: tuple[Container, str],
) -> None:
    container, base = served

    def post(_: int) -> httpx.Response:
        return client(base).post("/v1/messages", json=body(external_id="wc-burst"))

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(8)))
    assert {r.status_code for r in responses} == {200}
    results = [r.json() for r in responses]
    assert sum(not r["duplicate"] for r in results) == 1
    assert len({r["decision"]["id"] for r in results}) == 1
    assert container.store.inbound_count("web_chat", "wc-burst") == 1
    assert len(container.store.outbox(results[0]["customer_id"])) == 1


def test_conversation_shows_each_message_with_its_decision(
    served: tuple[Container, str],
) -> None:
    _, base = served
    http = client(base)
    turn = http.post("/v1/messages", json=body("We're 500 seats and need SSO and a quote")).json()
    view = http.get(f"/v1/conversations/{turn['conversation_id']}")
    assert view.status_code == 200
    data = view.json()
    assert data["active_handoff"]["queue"] == "sales"
    [inbound, outbound] = data["transcript"]
    assert inbound["message"]["direction"] == "inbound"
    assert inbound["decision"]["intent"] == "buying_signal"
    assert "escalate_to_human:escalation_rule:high_value_seats" in inbound["decision"]["reasons"]
    assert [v["tool"] for v in inbound["decision"]["verdicts"]] == [
        "send_message", "update_crm", "escalate_to_human"
    ]
    assert outbound["message"]["text"] == turn["reply"]
    assert outbound["decision"] is None

    customer = http.get(f"/v1/customers/{turn['customer_id']}").json()
    assert customer["profile"]["lifecycle_stage"] == "decision"
    assert customer["profile"]["attributes"]["seats"] == 500
    assert customer["profile"]["name"] == "Ana Diaz"
    assert [h["queue"] for h in customer["handoffs"]] == ["sales"]


def test_unknown_ids_are_404(served: tuple[Container, str]) -> None:
    _, base = served
    http = client(base)
    assert http.get("/v1/customers/cus_nope").status_code == 404
    assert "no conversation" in http.get("/v1/conversations/conv_nope").json()["detail"]


def test_openapi_docs_are_served(served: tuple[Container, str]) -> None:
    _, base = served
    spec = client(base, key=None).get("/openapi.json").json()
    assert {"/v1/messages", "/v1/health", "/v1/customers/{customer_id}",
            "/v1/conversations/{conversation_id}"} <= set(spec["paths"])
    assert client(base, key=None).get("/docs").status_code == 200
