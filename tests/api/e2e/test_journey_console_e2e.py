"""A journey's page in headless Chromium: the run of tests/api/test_console_journeys.py on the
real server, then the console's journeys list and the journey's inline SVG charts as the
browser draws them (under the console's Content-Security-Policy, with console.css)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, expect

from core.clock import FixedClock
from tests.api.test_console_journeys import JOURNEY, KEYS, TRIAL, run_trial
from tests.conftest import ContainerFactory
from tests.server import client, running_server

SCREENSHOT = Path(__file__).resolve().parents[3] / "build" / "e2e" / "journey.png"
BRAND = "rgb(61, 90, 254)"  # console.css --brand


def test_the_journey_page_draws_its_charts_in_the_browser(
    make_container: ContainerFactory, clock: FixedClock, browser: Browser, tmp_path: Path,
) -> None:
    path = tmp_path / "journeys.yaml"
    path.write_text(TRIAL)
    container = make_container(journeys_path=path, api_keys=KEYS)
    with running_server(container) as base, client(base) as api:
        run_trial(container, clock, api)
        metrics = api.get(f"/v1/journeys/{JOURNEY}/metrics").json()
        context = browser.new_context(base_url=base, viewport={"width": 1440, "height": 900})
        try:
            page = context.new_page()
            errors: list[str] = []

            def record(message: ConsoleMessage) -> None:
                # a CSP refusal is logged as an error; the browser's own favicon request is not
                # the page's
                if message.type == "error" and \
                        not message.location.get("url", "").endswith("/favicon.ico"):
                    errors.append(f"{message.text} ({message.location.get('url')})")

            page.on("console", record)
            page.goto("/console/journeys")
            expect(page).to_have_url(f"{base}/console/login?next=%2Fconsole%2Fjourneys")
            page.fill("#key", "ops-key")
            page.click("#login")
            expect(page).to_have_url(f"{base}/console/journeys")
            expect(page.get_by_test_id("nav-journeys")).to_have_class("on")
            row = page.locator(f'[data-testid=journey-row][data-journey="{JOURNEY}"]')
            expect(row.locator("[data-col=entered]")).to_have_text(str(metrics["entered"]))
            row.locator("a.journey-link").click()
            expect(page).to_have_url(f"{base}/console/journeys/{JOURNEY}")

            # every chart is an accessible image with a title
            charts = page.locator("figure.chart > svg[role=img]")
            expect(charts).to_have_count(7)  # funnel, days, holdout ×2, split, exits, suppressed
            for i in range(7):
                chart = charts.nth(i)
                expect(chart.locator(":scope > title")).not_to_be_empty()
                expect(chart).to_have_attribute("aria-label", re.compile(r"^\w.*: .*\d"))

            # the funnel: a bar per step, labelled, drawn as long as its value
            funnel = page.get_by_test_id("funnel").locator("g.bar")
            expect(funnel).to_have_count(len(metrics["funnel"]))
            expect(funnel.locator("text.label")).to_have_text(
                [f["step"] for f in metrics["funnel"]])
            expect(page.get_by_test_id("funnel").locator("svg")).to_have_attribute(
                "aria-label", re.compile(r"^Funnel: .*entered 12, settle \d+, .*goal 2$"))
            entered = funnel.first.locator("rect").bounding_box()
            goal = funnel.last.locator("rect").bounding_box()
            assert entered and goal
            assert goal["width"] / entered["width"] == pytest.approx(
                metrics["conversions"] / metrics["entered"], abs=0.01)
            fill = funnel.first.locator("rect").evaluate("r => getComputedStyle(r).fill")
            assert fill == BRAND  # console.css reached the SVG

            # the holdout: error bars, the lift and its words
            lift = page.get_by_test_id("holdout-lift").locator("g.row")
            expect(lift.locator("text.note")).to_have_text("not yet significant")
            rates = page.get_by_test_id("holdout-rates").locator("g.row")
            expect(rates.locator("text.label")).to_have_text(["treatment", "holdout"])
            bar = rates.first.locator("line.interval").bounding_box()
            assert bar and bar["width"] > 10  # an interval, drawn
            expect(page.get_by_test_id("variants-pick_tips-rates").locator("g.row text.label")
                   ).to_have_text(["short", "long"])
            days = page.get_by_test_id("by-day").locator("g.day")
            expect(days).to_have_count(4)

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert errors == []
        finally:
            context.close()
