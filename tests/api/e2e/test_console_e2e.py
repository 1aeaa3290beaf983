"""Human handoff end to end, in headless Chromium: a customer on the chat page, an agent in the
console, the real server with its worker thread (queued turns, the outbox relay)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from playwright.sync_api import Browser, Page, expect

from journey.handoffs import Agent
from tests.conftest import ContainerFactory
from tests.server import running_server

SCREENSHOT = Path(__file__).resolve().parents[3] / "build" / "e2e" / "console.png"
AGENT_KEY = "alice-inbox-key"
REPLY = "Hi, this is Alice from support. I can see your chat; how can I help?"
#: how long the bot must stay quiet while Alice owns the conversation
SILENCE_S = 3.0

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    """Poll the store until ``probe`` finds something (the worker runs turns in its thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def say(chat: Page, text: str) -> None:
    """Type a message in the chat page and wait until the server accepted it."""
    chat.fill("#text", text)
    chat.click("#send")
    sent = chat.locator(".msg.customer").filter(has_text=text)
    expect(sent).to_have_count(1)
    expect(sent).to_have_class(re.compile(r"\b(sent|failed)\b"))
    expect(sent).to_have_class(re.compile(r"\bsent\b"))


def test_a_customer_is_handed_to_a_person_and_back_to_the_bot(
    make_container: ContainerFactory, browser: Browser
) -> None:
    container = make_container(
        workers=1,
        api_keys={AGENT_KEY: {"name": "Alice", "scopes": ["inbox:support"]},
                  "test-admin": ["admin"]},
    )
    with running_server(container) as base:
        customer = browser.new_context(base_url=base)
        agent = browser.new_context(base_url=base, viewport={"width": 1440, "height": 900})
        try:
            # the agent signs in: an unauthenticated console sends her to the login page
            console = agent.new_page()
            console.goto("/console")
            expect(console).to_have_url(f"{base}/console/login?next=%2Fconsole")
            console.fill("#key", AGENT_KEY)
            console.click("#login")
            expect(console).to_have_url(f"{base}/console")
            expect(console.get_by_test_id("agent-name")).to_have_text("Alice")
            rows = console.locator("[data-testid=handoff-row]")
            expect(rows).to_have_count(0)

            # the customer asks for a person; the bot acknowledges
            chat = customer.new_page()
            chat.goto("/chat?name=Sam%20Rivera")
            expect(chat.locator("#state")).to_have_text("connected")
            say(chat, "Can I talk to a person please?")
            bot = chat.locator(".msg.bot")
            expect(bot).to_have_count(1)
            expect(bot.first).to_contain_text("support team")

            # the handoff appears in the open inbox without a reload
            expect(rows).to_have_count(1)
            row = rows.first
            expect(row).to_contain_text("Sam Rivera")
            expect(row).to_contain_text("support")
            expect(row.get_by_test_id("status")).to_have_text("open")
            expect(row.get_by_test_id("sla-claim")).to_have_attribute("data-state", "ok")
            handoff_id = row.get_attribute("data-handoff-id")
            assert handoff_id

            # Alice opens it, claims it and replies
            row.locator("a.customer").click()
            expect(console).to_have_url(f"{base}/console/handoffs/{handoff_id}")
            expect(console.get_by_test_id("transcript")).to_contain_text(
                "Can I talk to a person please?")
            console.click("#claim")
            expect(console.locator("#action-notice")).to_contain_text("Claimed")
            expect(console.locator("#status [data-testid=status]")).to_have_text("claimed")
            console.fill("#reply-text", REPLY)
            console.click("#reply-send")
            expect(console.locator("#action-notice")).to_contain_text("Sent to the customer")

            # the customer sees it, labelled with Alice's name
            person = chat.locator(".msg.human")
            expect(person).to_have_count(1)
            expect(person.locator(".who")).to_have_text("Alice")
            expect(person.locator(".bubble")).to_have_text(REPLY)
            expect(console.locator('[data-testid=transcript-message][data-author="human:Alice"]')
                   ).to_contain_text(REPLY)

            # the customer writes again: recorded, shown to Alice, and the bot stays silent
            follow_up = "Thanks Alice! It's about the invoice from March."
            say(chat, follow_up)
            customer_id = container.handoffs.view(Agent(name="test"), handoff_id).customer_id
            message = eventually(
                lambda: next((m for m in container.store.messages(customer_id=customer_id)
                              if m.direction == "inbound" and m.text == follow_up), None),
                "the follow-up to be stored")
            decision = eventually(lambda: container.store.decision_for_inbound(message.id),
                                  "the follow-up's decision")
            sends = [v for v in decision.verdicts if v.tool == "send_message"]
            assert sends, decision.verdicts
            assert all(v.outcome == "deny" and "handoff_active" in v.reason_codes
                       for v in sends), sends
            in_console = console.locator(
                f'[data-testid=transcript-message][data-message-id="{message.id}"]')
            expect(in_console).to_contain_text(follow_up)
            expect(in_console.get_by_test_id("turn")).to_contain_text("handoff_active")
            chat.wait_for_timeout(SILENCE_S * 1000)  # deliberate: nothing may arrive
            expect(bot).to_have_count(1)
            assert [m.author for m in container.store.messages(customer_id=customer_id)
                    if m.direction == "outbound"] == ["bot", "human:Alice"]

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            console.screenshot(path=str(SCREENSHOT), full_page=True)
            assert SCREENSHOT.stat().st_size > 20_000

            # Alice hands the conversation back; the bot answers the next question
            console.click("#return")
            expect(console.locator("#action-notice")).to_contain_text("Returned to the bot")
            expect(console.locator("#status [data-testid=status]")).to_have_text("returned")
            say(chat, "What does the Growth plan include?")
            expect(bot).to_have_count(2)
            expect(bot.last).to_contain_text("$399")
        finally:
            customer.close()
            agent.close()
