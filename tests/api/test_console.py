"""The web console without a browser: sign-in, the session cookie, CSRF, what the pages show,
and that every asset is local. (The browser run is tests/api/e2e.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import console
from api.app import create_app
from journey.handoffs import Agent
from journey.runtime import Container
from tests.conftest import ContainerFactory

KEYS: dict[str, Any] = {
    "alice-key": {"name": "Alice", "scopes": ["inbox:support"]},
    "bob-key": {"name": "Bob", "scopes": ["inbox"]},
    "sid-key": {"name": "Sid", "scopes": ["inbox:sales"]},
    "test-writer": ["messages:write"],
    "test-admin": ["admin"],
}
ADMIN = {"Authorization": "Bearer test-admin"}
HTMX = {"HX-Request": "true"}
API = Path(console.__file__).parent.parent  # api/ (the console is a package in it)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The console reads through the handoff service, whose backends have their own tests."""
    return f"sqlite:///{tmp_path / 'journey.sqlite'}"


@pytest.fixture
def served(make_container: ContainerFactory) -> Iterator[tuple[Container, TestClient]]:
    container = make_container(api_keys=KEYS)
    with TestClient(create_app(container=container), follow_redirects=False) as http:
        yield container, http


def another_browser(http: TestClient) -> TestClient:
    """A second cookie jar on the same running app."""
    return TestClient(http.app, follow_redirects=False)


class Found(HTMLParser):
    """The elements with a given ``data-testid`` (or ``id``): their attributes and text."""

    VOID = frozenset({"input", "br", "meta", "link", "img", "hr", "source"})

    def __init__(self, html: str, *, testid: str | None = None, id: str | None = None) -> None:
        super().__init__()
        self.want = ("data-testid", testid) if testid else ("id", id)
        self.items: list[tuple[dict[str, str], str]] = []
        self._open: list[tuple[dict[str, str], list[str], int]] = []
        self._depth = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag in self.VOID:
            if found.get(self.want[0]) == self.want[1]:
                self.items.append((found, ""))
            return
        self._depth += 1
        if found.get(self.want[0]) == self.want[1]:
            self._open.append((found, [], self._depth))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self._open and self._open[-1][2] == self._depth:
            found, text, _ = self._open.pop()
            self.items.append((found, " ".join(" ".join(text).split())))
            for _, outer, _ in self._open:
                outer.extend(text)
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][1].append(data)


def sign_in(http: TestClient, key: str) -> str:
    """Sign in; the page's CSRF token."""
    response = http.post("/console/login", data={"key": key})
    assert response.status_code == 303, response.text
    page = http.get("/console")
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert match
    return match.group(1)


def write(http: TestClient, channel: str, text: str, **customer: str) -> dict[str, Any]:
    response = http.post("/v1/messages", headers=ADMIN,
                         json={"channel": channel, "customer": customer, "text": text})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def escalate(container: Container, http: TestClient) -> str:
    """Sam asks about a plan by email, then for a person by SMS: a support handoff."""
    write(http, "email", "What does the Growth plan include?",
          email="sam@example.com", phone="+14155550100", name="Sam Rivera")
    write(http, "sms", "Can I talk to a person please?", phone="+14155550100")
    [handoff] = container.handoffs.list(Agent(name="test"))
    assert (handoff.queue, handoff.status) == ("support", "open")
    return handoff.id


# --- signing in --------------------------------------------------------------------------------


def test_signing_in_sets_a_signed_http_only_cookie_that_never_holds_the_key(
    served: tuple[Container, TestClient],
) -> None:
    _, http = served
    response = http.post("/console/login", data={"key": "alice-key"})
    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    cookie = response.headers["set-cookie"]
    value = cookie.split(";")[0].removeprefix(f"{console.COOKIE}=")
    assert "alice-key" not in cookie
    assert re.fullmatch(r"[0-9a-f]{64}\.\d+\.[0-9a-f]{64}", value)
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/console", "max-age=43200"} <= flags

    page = http.get("/console")
    assert page.status_code == 200
    assert Found(page.text, testid="agent-name").items[0][1] == "Alice"
    assert page.headers["content-security-policy"].startswith("default-src 'self'")

    # the cookie alone is the session; a forged signature is none
    fresh = another_browser(http)
    assert fresh.get("/console", headers={"Cookie": f"{console.COOKIE}={value}"}
                     ).status_code == 200
    forged = value[:-1] + ("0" if value[-1] != "0" else "1")
    assert fresh.get("/console", headers={"Cookie": f"{console.COOKIE}={forged}"}
                     ).status_code == 303


@pytest.mark.parametrize(
    ("key", "status", "error"),
    [
        ("test-writer", 403, "This API key has no inbox scope: it needs 'inbox' or "
                             "'inbox:<queue>'."),
        ("not-a-key", 401, "Unknown API key."),
        ("", 401, "Unknown API key."),
    ],
)
def test_keys_without_an_inbox_scope_get_the_form_back_with_the_reason(
    served: tuple[Container, TestClient], key: str, status: int, error: str
) -> None:
    _, http = served
    response = http.post("/console/login", data={"key": key})
    assert response.status_code == status
    assert "set-cookie" not in response.headers
    assert Found(response.text, id="login-error").items[0][1] == error
    assert Found(response.text, id="key").items  # the form is back
    assert http.get("/console").status_code == 303


@pytest.mark.parametrize(
    "path", ["/console", "/console/inbox?status=all", "/console/handoffs/hof_1",
             "/console/handoffs/hof_1/live", "/console/metrics"],
)
def test_signed_out_pages_send_the_browser_to_the_login_page(
    served: tuple[Container, TestClient], path: str
) -> None:
    _, http = served
    response = http.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/login?next=%2Fconsole")
    # an htmx poll cannot follow a redirect: it is told to load the login page
    polled = http.get(path, headers=HTMX)
    assert (polled.status_code, polled.headers["hx-redirect"]) == (401, "/console/login")


def test_after_signing_in_the_agent_lands_where_she_was_going_never_on_another_site(
    served: tuple[Container, TestClient],
) -> None:
    _, http = served
    target = http.get("/console/metrics").headers["location"]
    form = http.get(target)
    assert 'name="next" value="/console/metrics"' in form.text
    response = http.post("/console/login", data={"key": "bob-key", "next": "/console/metrics"})
    assert response.headers["location"] == "/console/metrics"
    for evil in ("//evil.example/console", "https://evil.example", "/console\\@evil"):
        response = http.post("/console/login", data={"key": "bob-key", "next": evil})
        assert response.headers["location"] == "/console"


def test_signing_out_and_removing_the_key_both_end_the_session(
    served: tuple[Container, TestClient],
) -> None:
    container, http = served
    csrf = sign_in(http, "alice-key")
    assert http.post("/console/logout").status_code == 403  # no CSRF token
    out = http.post("/console/logout", data={"csrf_token": csrf})
    assert (out.status_code, out.headers["location"]) == (303, "/console/login")
    assert http.get("/console").status_code == 303

    sign_in(http, "alice-key")
    del container.settings.api_keys["alice-key"]
    assert http.get("/console").status_code == 303


# --- CSRF --------------------------------------------------------------------------------------


def test_console_posts_without_the_csrf_token_are_refused(
    served: tuple[Container, TestClient],
) -> None:
    container, http = served
    handoff_id = escalate(container, http)
    csrf = sign_in(http, "alice-key")
    other = another_browser(http)
    other_csrf = sign_in(other, "bob-key")
    assert other_csrf != csrf

    url = f"/console/handoffs/{handoff_id}/claim"
    for headers in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": other_csrf}):
        refused = http.post(url, headers=HTMX | headers)
        assert refused.status_code == 403
        assert "CSRF" in refused.json()["detail"]
    assert container.handoffs.view(Agent(name="test"), handoff_id).status == "open"

    claimed = http.post(url, headers=HTMX | {"X-CSRF-Token": csrf})
    assert claimed.status_code == 200
    assert claimed.headers["hx-trigger"] == "console-changed"
    assert Found(claimed.text, id="action-notice").items[0][1] == (
        "Claimed: the conversation is yours.")
    view = container.handoffs.view(Agent(name="test"), handoff_id)
    assert (view.status, view.assignee) == ("claimed", "Alice")


# --- the pages ---------------------------------------------------------------------------------


def transcript(html: str) -> list[tuple[str, str, str]]:
    """(author, channel, text) of each transcript message."""
    found = Found(html, testid="transcript-message").items
    return [(a["data-author"], a["data-channel"], text) for a, text in found]


def test_the_conversation_shows_the_cross_channel_transcript_profile_and_trace(
    served: tuple[Container, TestClient],
) -> None:
    container, http = served
    handoff_id = escalate(container, http)
    csrf = sign_in(http, "alice-key")

    inbox = http.get("/console")
    [(row, text)] = Found(inbox.text, testid="handoff-row").items
    assert row["data-handoff-id"] == handoff_id
    assert "Sam Rivera" in text and "support" in text and "sms" in text
    [(sla, label)] = Found(inbox.text, testid="sla-claim").items
    assert (sla["data-state"], label) == ("ok", "claim in 10m")

    page = http.get(f"/console/handoffs/{handoff_id}")
    assert page.status_code == 200
    messages = transcript(page.text)
    assert [(author, channel) for author, channel, _ in messages] == [
        ("customer", "email"), ("bot", "email"), ("customer", "sms"), ("bot", "sms")]
    assert messages[0][2].startswith("Sam Rivera email")
    assert "What does the Growth plan include?" in messages[0][2]
    assert "Can I talk to a person please?" in messages[2][2]
    [(_, profile)] = Found(page.text, testid="profile").items
    assert "sam@example.com" in profile and "+14155550100" in profile
    [(_, packet)] = Found(page.text, testid="packet").items
    assert "escalation_rule:explicit_human_request" in packet
    assert len(Found(page.text, testid="decision").items) == 2
    assert Found(page.text, id="claim").items and not Found(page.text, id="reply-text").items

    # claim and reply through the console; the customer answers on SMS meanwhile
    post = HTMX | {"X-CSRF-Token": csrf}
    assert http.post(f"/console/handoffs/{handoff_id}/claim", headers=post).status_code == 200
    sent = http.post(f"/console/handoffs/{handoff_id}/reply", headers=post,
                     data={"text": "Hi Sam, Alice here.", "idempotency_key": "k1"})
    assert sent.status_code == 200, sent.text
    again = http.post(f"/console/handoffs/{handoff_id}/reply", headers=post,
                      data={"text": "Hi Sam, Alice here.", "idempotency_key": "k1"})
    assert again.status_code == 200
    silent = write(http, "sms", "Great, it's about my invoice", phone="+14155550100")
    assert silent["reply"] is None

    live = http.get(f"/console/handoffs/{handoff_id}/live", headers=HTMX)
    messages = transcript(live.text)
    assert [(author, channel) for author, channel, _ in messages[4:]] == [
        ("human:Alice", "sms"), ("customer", "sms")]
    assert "Hi Sam, Alice here." in messages[4][2]
    [turn] = [t for a, t in Found(live.text, testid="transcript-message").items
              if a["data-message-id"] == silent["message_id"]]
    assert "send_message deny handoff_active" in turn
    assert re.findall(r'data-kind="([a-z_]+)"', live.text) == [
        "created", "claimed", "reply", "customer_message"]
    # the status, the events and the trace refresh out of band in the same answer
    assert re.findall(r'id="(\w+)" class="[^"]*" hx-swap-oob="true"', live.text) == [
        "status", "events", "trace"]


def test_a_claim_lost_to_another_agent_is_explained_inline(
    served: tuple[Container, TestClient],
) -> None:
    container, http = served
    handoff_id = escalate(container, http)
    csrf = sign_in(http, "alice-key")
    assert Found(http.get(f"/console/handoffs/{handoff_id}").text, id="claim").items
    container.handoffs.claim(Agent(name="Bob"), handoff_id)

    lost = http.post(f"/console/handoffs/{handoff_id}/claim",
                     headers=HTMX | {"X-CSRF-Token": csrf})
    assert lost.status_code == 409
    [(_, error)] = Found(lost.text, id="action-error").items
    assert error.startswith(f"handoff {handoff_id} is already claimed by Bob")
    assert not Found(lost.text, id="claim").items
    assert "Claimed by Bob ." in Found(lost.text, id="actions").items[0][1]

    # without htmx (a plain form post) the same answer is a page, never a 500
    plain = http.post(f"/console/handoffs/{handoff_id}/claim", data={"csrf_token": csrf})
    assert plain.status_code == 409
    assert "already claimed by Bob" in Found(plain.text, testid="error").items[0][1]
    # nor may Alice reply to Bob's conversation
    reply = http.post(f"/console/handoffs/{handoff_id}/reply",
                      headers=HTMX | {"X-CSRF-Token": csrf}, data={"text": "me too"})
    assert reply.status_code == 409
    assert "claimed by Bob" in Found(reply.text, id="action-error").items[0][1]


def test_an_empty_reply_is_refused_inline_and_keeps_nothing(
    served: tuple[Container, TestClient],
) -> None:
    container, http = served
    handoff_id = escalate(container, http)
    csrf = sign_in(http, "alice-key")
    post = HTMX | {"X-CSRF-Token": csrf}
    http.post(f"/console/handoffs/{handoff_id}/claim", headers=post)
    empty = http.post(f"/console/handoffs/{handoff_id}/reply", headers=post,
                      data={"text": "   "})
    assert empty.status_code == 422
    assert Found(empty.text, id="action-error").items[0][1] == "write a reply first"
    long = http.post(f"/console/handoffs/{handoff_id}/note", headers=post,
                     data={"text": "x" * 4001})
    assert long.status_code == 422
    assert Found(long.text, id="note-text").items[0][0]["value"] == "x" * 4001  # kept
    assert [e.kind for e in container.handoffs.events(Agent(name="t"), handoff_id)] == [
        "created", "claimed"]


def test_an_agent_sees_and_works_only_her_queues(served: tuple[Container, TestClient]) -> None:
    container, http = served
    handoff_id = escalate(container, http)
    csrf = sign_in(http, "sid-key")  # sales only
    assert Found(http.get("/console").text, testid="handoff-row").items == []
    page = http.get(f"/console/handoffs/{handoff_id}")
    assert page.status_code == 403
    assert Found(page.text, testid="error").items[0][1] == (
        "your key does not cover the queue 'support'")
    filtered = http.get("/console/inbox?queue=support", headers=HTMX)
    assert "your key does not cover the queue &#39;support&#39;" in filtered.text
    claim = http.post(f"/console/handoffs/{handoff_id}/claim",
                      headers=HTMX | {"X-CSRF-Token": csrf})
    assert claim.status_code == 403
    assert container.handoffs.view(Agent(name="t"), handoff_id).status == "open"


def test_the_inbox_filters_by_status_and_queue(served: tuple[Container, TestClient]) -> None:
    container, http = served
    handoff_id = escalate(container, http)
    csrf = sign_in(http, "bob-key")
    returned = http.post(f"/console/handoffs/{handoff_id}/return",
                         data={"csrf_token": csrf, "note": "billing question, answered"})
    assert (returned.status_code, returned.headers["location"]) == (
        303, f"/console/handoffs/{handoff_id}")

    def rows(query: str) -> list[str]:
        html = http.get(f"/console/inbox?{query}", headers=HTMX).text
        return [a["data-handoff-id"] for a, _ in Found(html, testid="handoff-row").items]

    assert rows("") == []  # active by default
    assert rows("status=returned") == rows("status=all") == [handoff_id]
    assert rows("status=all&queue=sales") == []
    assert rows("status=all&queue=support") == [handoff_id]
    # a page, not an API: an empty or unknown filter shows the active handoffs
    assert rows("status=") == rows("status=nope") == []
    assert http.get("/console?status=").status_code == 200

    page = http.get(f"/console/handoffs/{handoff_id}").text
    assert "Returned to the bot." in page
    assert not Found(page, id="claim").items and not Found(page, id="return").items
    assert "billing question, answered" in Found(page, testid="events").items[0][1]


def test_the_metrics_page_shows_each_queue(served: tuple[Container, TestClient]) -> None:
    container, http = served
    handoff_id = escalate(container, http)
    container.handoffs.claim(Agent(name="Bob"), handoff_id)
    container.handoffs.resolve(Agent(name="Bob"), handoff_id,
                               container.handoffs.outcomes()[0])
    sign_in(http, "bob-key")
    page = http.get("/console/metrics")
    assert page.status_code == 200
    queues = re.findall(r'<tr data-queue="([a-z_]+)"', page.text)
    assert queues == ["support", "all"]
    sign_in(http, "alice-key")  # one queue: no total over queues she cannot see
    assert re.findall(r'<tr data-queue="([a-z_]+)"', http.get("/console/metrics").text) == [
        "support"]


# --- assets ------------------------------------------------------------------------------------


def test_the_chat_page_and_its_assets_are_served_by_the_app(
    served: tuple[Container, TestClient],
) -> None:
    _, http = served
    page = http.get("/chat")
    assert page.status_code == 200
    assert "Acme Journeys" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    for path, kind in [("/static/htmx.min.js", "javascript"), ("/static/chat.js", "javascript"),
                       ("/static/chat.css", "text/css"), ("/static/console.css", "text/css")]:
        asset = http.get(path)
        assert asset.status_code == 200, path
        assert kind in asset.headers["content-type"]
    assert http.get("/static/htmx.min.js").text.startswith("var htmx=function()")


def test_no_template_or_asset_of_ours_loads_anything_from_another_site() -> None:
    ours = [*sorted((API / "templates").rglob("*.html")),
            *(API / "static" / name for name in ("chat.js", "chat.css", "console.css"))]
    assert len(ours) > 10
    for path in ours:
        text = path.read_text()
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), path
        for src in re.findall(r'(?:src|href)="([^"{]+)"', text):
            assert src.startswith("/"), (path, src)
