"""The console's journeys pages against the real server: a journey with a wait, a split, sends,
a goal and a holdout run through the HTTP API and a worker on the test's clock; then every
number the pages show (funnel bars, rates, interval ends, lifts, the words "not yet
significant") is checked against ``GET /v1/journeys/{name}/metrics`` at the same moment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from core.clock import FixedClock
from core.domain import Identity
from core.inbox import human_duration
from journey.experiments import in_holdout
from journey.runtime import Container
from tests.conftest import ContainerFactory
from tests.journey.test_journeys import _ev, _events
from tests.server import client, drain, one_worker, running_server

JOURNEY = "trial_onboarding"
TRIAL = """
templates:
  tips_short: >-
    Hi {first_name}, three tips for your first week of the trial.
  tips_long: >-
    Hi {first_name}, here is the whole guide to your first week: import, invite, automate.
  static_tips: >-
    Hi {first_name}, the tips we send everyone who starts a trial.
journeys:
  - name: demo_alert
    description: A demo request goes to sales at once.
    trigger: {event: demo_requested}
    actions:
      escalate: {queue: sales, priority: high, reason: "asked for a demo"}
  - name: trial_onboarding
    description: A day after a trial starts, one of two tip emails (a split); the goal is a
      subscription within 14 days. The holdout gets the static tips.
    trigger: {event: trial_started}
    goal: {event: subscription_started, within: 14d}
    holdout: {share: 0.3, goto: static_wait}
    exits: {events: [unsubscribed]}
    steps:
      - id: settle
        wait: 1d
      - id: pick_tips
        split:
          variants:
            - {name: short, goto: tips_short}
            - {name: long, goto: tips_long}
      - id: tips_short
        send: {channel: email, template: tips_short, subject: "Three tips"}
        next: await_goal
      - id: tips_long
        send: {channel: email, template: tips_long, subject: "Your first week"}
      - id: await_goal
        wait_until: {event: subscription_started, timeout: 13d, on_event: subscribed,
                     on_timeout: lapsed}
      - id: subscribed
        exit: subscribed
      - id: lapsed
        exit: no_subscription
      - id: static_wait
        wait: 1d
      - id: static_tips
        send: {channel: email, template: static_tips, subject: "Trial tips"}
"""
KEYS: dict[str, Any] = {
    "ops-key": {"name": "Olga", "scopes": ["admin"]},
    "alice-key": {"name": "Alice", "scopes": ["inbox:support"]},
    "test-admin": ["admin"],
}
PEOPLE = [f"cus_trial_{i:02d}" for i in range(12)]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The metrics' store backends have their own tests; the pages run on SQLite."""
    return f"sqlite:///{tmp_path / 'journey.sqlite'}"


# --- a run of the journey ----------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    control: list[str]
    treated: list[str]
    #: a treated customer who never gave marketing consent: the policy suppresses the email
    shy: str
    #: a treated customer who unsubscribes while the first wait runs
    leaver: str
    buyers: list[str]


def _who(cid: str) -> dict[str, str]:
    return {"email": f"{cid}@example.com"}


def run_trial(container: Container, clock: FixedClock, api: httpx.Client) -> Trial:
    """Twelve trials over two days through ``POST /v1/events``, a worker stepping them: one
    customer unsubscribes, one has no marketing consent, a treated customer and a holdout
    customer subscribe. Ends three days in, with most customers still waiting for the goal."""
    assert container.stepper is not None
    container.stepper.rng = np.random.default_rng(2026)  # the split's draws replay
    control = [c for c in PEOPLE if in_holdout(JOURNEY, c, 0.3, "")]
    treated = [c for c in PEOPLE if c not in control]
    # SHA-256 of the ids decides the arms: the same every run
    assert len(control) >= 2 and len(treated) >= 6, control
    shy, leaver = treated[0], treated[1]
    for i, cid in enumerate(PEOPLE):
        marketing = {} if cid == shy else {"marketing": "granted"}
        container.store.create_customer(
            [Identity(kind="email", value=f"{cid}@example.com")], "consideration",
            name=f"Pat{i} Doe", timezone="America/New_York", customer_id=cid,
            consent={"email": {"service": "granted", **marketing}})
    worker = one_worker(container)
    start = clock.now()  # 15:00 UTC, 10:00 in New York
    first, second = PEOPLE[:8], PEOPLE[8:]
    _events(api, *[_ev(f"t{c}", "trial_started", start, _who(c)) for c in first])
    drain(worker)
    clock.advance(hours=1)
    _events(api, _ev("bye", "unsubscribed", clock.now(), _who(leaver)))
    drain(worker)
    clock.advance(days=1)  # the first wave's wait is over; a second wave starts
    _events(api, *[_ev(f"t{c}", "trial_started", clock.now(), _who(c)) for c in second])
    drain(worker)
    clock.advance(days=1)
    drain(worker)
    # one treated customer who got a tips email subscribes, one of the variant most drawn (a
    # single conversion in the rarer variant would already make it the winner), and one
    # holdout customer
    drawn: dict[str, list[str]] = {}
    for e in container.store.enrolments.for_journey(JOURNEY):
        if e.customer_id not in (shy, leaver) and "pick_tips" in e.variants:
            drawn.setdefault(e.variants["pick_tips"], []).append(e.customer_id)
    assert sum(map(len, drawn.values())) == len(treated) - 2
    buyers = [max(drawn.values(), key=len)[0], control[0]]
    clock.advance(days=1)
    _events(api, *[_ev(f"sub{c}", "subscription_started", clock.now(), _who(c))
                   for c in buyers])
    drain(worker)
    return Trial(control=control, treated=treated, shy=shy, leaver=leaver, buyers=buyers)


# --- reading the pages -------------------------------------------------------------------------


class Node:
    """An element of a parsed page: its tag, attributes and children (elements and text)."""

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[Node | str] = []

    def __getitem__(self, name: str) -> str:
        return self.attrs[name]

    @property
    def text(self) -> str:
        parts: list[str] = []

        def walk(node: Node) -> None:
            for child in node.children:
                if isinstance(child, str):
                    parts.append(child)
                else:
                    walk(child)

        walk(self)
        return " ".join(" ".join(parts).split())

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Every element below this one with ``tag`` and these attributes (``data_testid`` is
        ``data-testid``; ``class_`` one of the classes)."""
        found: list[Node] = []
        want = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}

        def matches(node: Node) -> bool:
            for key, value in want.items():
                if key == "class":
                    if value not in node.attrs.get("class", "").split():
                        return False
                elif node.attrs.get(key) != value:
                    return False
            return tag is None or node.tag == tag

        def walk(node: Node) -> None:
            for child in node.children:
                if isinstance(child, Node):
                    if matches(child):
                        found.append(child)
                    walk(child)

        walk(self)
        return found

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.all(tag, **attrs)
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]

    def direct(self, tag: str) -> list[Node]:
        return [c for c in self.children if isinstance(c, Node) and c.tag == tag]


class Page(HTMLParser):
    """A page as a tree of :class:`Node` (HTML's void elements and SVG's ``<x/>`` close
    themselves)."""

    VOID = frozenset({"input", "br", "meta", "link", "img", "hr", "source"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.root = Node("#document", {})
        self._stack = [self.root]
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self._stack[-1].children.append(node)
        if tag not in self.VOID:
            self._stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        for depth in range(len(self._stack) - 1, 0, -1):
            if self._stack[depth].tag == tag:
                del self._stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self._stack[-1].children.append(data)


def parse(html: str) -> Node:
    return Page(html).root


def pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def pts(lift: float | None) -> str:
    return "—" if lift is None else f"{lift * 100:+.1f}"


def chips(counts: dict[str, int]) -> list[str]:
    return [f"{name} {n}" for name, n in counts.items()] or ["—"]


@contextmanager
def console(base: str, key: str) -> Iterator[httpx.Client]:
    """A browser's cookie jar, signed in to the console with ``key``."""
    with httpx.Client(base_url=base, follow_redirects=False, timeout=60) as browser:
        signed = browser.post("/console/login", data={"key": key})
        assert signed.status_code == 303, signed.text
        yield browser


# --- the checks ----------------------------------------------------------------------------------


def check_hbars(figure: Node, items: list[tuple[str, int]], first: int | None = None) -> None:
    """The bars are ``items`` in order, each labelled with its value (and its share of
    ``first``), each as long as its value allows."""
    svg = figure.one("svg")
    assert svg["role"] == "img" and svg.direct("title")[0].text
    bars = svg.all("g", class_="bar")
    assert [(b["data-label"], int(b["data-value"])) for b in bars] == items
    for bar, (_, value) in zip(bars, items, strict=True):
        shown = bar.one("text", class_="value").text
        assert shown == (f"{value} ({pct(value / first)})" if first else str(value))
        assert svg["aria-label"].count(f"{bar['data-label']} {value}") >= 1
    top = max(v for _, v in items)
    longest = max(float(b.one("rect")["width"]) for b in bars)
    for bar, (_, value) in zip(bars, items, strict=True):
        assert float(bar.one("rect")["width"]) == pytest.approx(value / top * longest, abs=0.01)


def check_whiskers(figure: Node, rows: list[dict[str, Any]], kind: str) -> None:
    """Each row's point and interval ends sit where the drawn axis puts those values, and the
    row says its numbers and its note."""
    svg = figure.one("svg")
    assert svg["role"] == "img"
    axis = svg.one("line", class_="axis")
    low, high = float(axis["data-low"]), float(axis["data-high"])
    x0, x1 = float(axis["x1"]), float(axis["x2"])

    def x(value: float) -> float:
        return x0 + (value - low) / (high - low) * (x1 - x0)

    if kind == "lift":
        assert low == -high
        assert float(svg.one("line", class_="zero")["x1"]) == pytest.approx(x(0.0), abs=0.01)
    drawn = svg.all("g", class_="row")
    assert [g["data-label"] for g in drawn] == [r["label"] for r in rows]
    for g, row in zip(drawn, rows, strict=True):
        assert low <= row["low"] <= row["high"] <= high
        interval = g.one("line", class_="interval")
        assert float(interval["x1"]) == pytest.approx(x(row["low"]), abs=0.01)
        assert float(interval["x2"]) == pytest.approx(x(row["high"]), abs=0.01)
        assert float(g.one("circle")["cx"]) == pytest.approx(x(row["point"]), abs=0.01)
        if kind == "rate":
            numbers = f"{pct(row['point'])} ({pct(row['low'])}–{pct(row['high'])})"
            assert float(g.one("rect")["width"]) == pytest.approx(x(row["point"]) - x0,
                                                                  abs=0.01)
        else:
            numbers = f"{pts(row['point'])} pts ({pts(row['low'])} to {pts(row['high'])})"
        assert g.one("text", class_="value").text == numbers
        assert g.one("text", class_="note").text == row["note"]
        assert f"{row['label']} {numbers}" in svg["aria-label"]


def check_experiment(block: Node, experiment: dict[str, Any], testid: str) -> None:
    arms = experiment["arms"] + ([experiment["holdout"]] if experiment["holdout"] else [])
    check_whiskers(block.one(data_testid=f"{testid}-rates"), [
        {"label": a["name"], "point": a["rate"], "low": a["interval"]["low"],
         "high": a["interval"]["high"],
         "note": f"{a['conversions']} of {a['customers']} converted"} for a in arms], "rate")
    lifted = [a for a in experiment["arms"] if a["lift_interval"] is not None]
    if lifted:
        check_whiskers(block.one(data_testid=f"{testid}-lift"), [
            {"label": a["name"], "point": a["lift"], "low": a["lift_interval"]["low"],
             "high": a["lift_interval"]["high"],
             "note": "significant" if a["lift_significant"] else "not yet significant"}
            for a in lifted], "lift")
    else:
        assert block.all(data_testid=f"{testid}-lift") == []
    assert block.one(data_testid="summary").text == experiment["summary"]
    winner = experiment["winner"]
    assert block.one(data_testid="winner").text == (f"winner: {winner}" if winner
                                                    else "no winner yet")
    rows = block.all("tr", data_testid="arm")
    assert [r["data-arm"] for r in rows] == [a["name"] for a in arms]
    for row, arm in zip(rows, arms, strict=True):
        def cell(col: str, row: Node = row) -> str:
            return row.one("td", data_col=col).text

        assert (cell("customers"), cell("conversions"), cell("rate"), cell("interval")) == (
            str(arm["customers"]), str(arm["conversions"]), pct(arm["rate"]),
            f"{pct(arm['interval']['low'])}–{pct(arm['interval']['high'])}")
        if arm["lift_interval"] is not None:
            assert (cell("lift"), cell("lift-interval"), cell("significance")) == (
                pts(arm["lift"]),
                f"{pts(arm['lift_interval']['low'])} to {pts(arm['lift_interval']['high'])}",
                "significant" if arm["lift_significant"] else "not yet significant")


# --- the tests -----------------------------------------------------------------------------------


@pytest.fixture
def trial_container(make_container: ContainerFactory, tmp_path: Path) -> Container:
    path = tmp_path / "journeys.yaml"
    path.write_text(TRIAL)
    return make_container(journeys_path=path, api_keys=KEYS)


def test_the_journey_page_shows_the_metrics_the_api_reports(
    trial_container: Container, clock: FixedClock,
) -> None:
    with running_server(trial_container) as base, client(base) as api:
        trial = run_trial(trial_container, clock, api)
        metrics = api.get(f"/v1/journeys/{JOURNEY}/metrics").json()
        with console(base, "ops-key") as browser:
            response = browser.get(f"/console/journeys/{JOURNEY}")
            assert response.status_code == 200, response.text
            assert response.headers["content-security-policy"].startswith("default-src 'self'")
            page = parse(response.text)
        assert api.get(f"/v1/journeys/{JOURNEY}/metrics").json() == metrics  # nothing moved

    # the run is what the scenario made: the page below has something in every part
    assert metrics["entered"] == 12
    assert metrics["by_arm"] == {"treatment": len(trial.treated), "holdout": len(trial.control)}
    assert metrics["conversions"] == 2 and metrics["messages_suppressed"] == 1
    assert metrics["suppressed_by"] == {"no_consent": 1}  # the shy customer's email
    assert metrics["exited"]["event:unsubscribed"] == 1
    assert len(metrics["by_day"]) == 3

    assert page.one(data_testid="journey-name").text == JOURNEY
    assert page.one("a", data_testid="nav-journeys")["class"] == "on"
    facts = page.one(data_testid="facts").text
    assert "trial_started" in facts and "subscription_started within 14 days" in facts
    assert "30.0%" in facts
    tiles = {t["data-testid"]: t.one("b").text for t in page.all(class_="tile")}
    assert tiles == {
        "tile-entered": str(metrics["entered"]), "tile-active": str(metrics["active"]),
        "tile-conversions": str(metrics["conversions"]),
        "tile-sent": str(metrics["messages_sent"]),
        "tile-suppressed": str(metrics["messages_suppressed"]),
        "tile-time": human_duration(metrics["time_to_convert_hours"]["median"] * 3600),
    }
    median, p90 = (metrics["time_to_convert_hours"][k] for k in ("median", "p90"))
    assert page.one(data_testid="tile-time").one(class_="note").text == (
        f"median {median:.1f} h · p90 {p90:.1f} h")
    assert (page.one(data_testid="tile-entered").one(class_="note").text
            == f"treatment {len(trial.treated)} · holdout {len(trial.control)}")

    # the funnel: entered, each step's reached, the goal, as bars with their shares
    funnel = [(f["step"], f["customers"]) for f in metrics["funnel"]]
    assert funnel[0] == ("entered", 12) and funnel[-1] == ("goal", 2)
    check_hbars(page.one(data_testid="funnel"), funnel, first=12)

    # conversions over time: one group per calendar day (a day without a row in the report
    # is drawn as zeros), a bar per series, all on one scale
    days = page.one(data_testid="by-day").one("svg")
    groups = days.all("g", class_="day")
    reported = {d["day"]: d for d in metrics["by_day"]}
    assert [g["data-day"] for g in groups] == ["2026-11-03", "2026-11-04", "2026-11-05",
                                               "2026-11-06"]
    assert set(reported) == {"2026-11-03", "2026-11-04", "2026-11-06"}
    scale = set()
    for group in groups:
        day = reported.get(group["data-day"],
                           {"entered": 0, "conversions": {"treatment": 0, "holdout": 0}})
        bars = group.all("rect")
        expected = [("entered", day["entered"]),
                    ("treatment", day["conversions"]["treatment"]),
                    ("holdout", day["conversions"]["holdout"])]
        assert [(b["data-series"], int(b["data-value"])) for b in bars] == expected
        assert [t.text for t in group.all("text", class_="value")] == [
            str(v) for _, v in expected if v]
        for bar, (_, value) in zip(bars, expected, strict=True):
            height = float(bar["height"])
            assert (height == 0) == (value == 0)
            if value:
                scale.add(round(height / value, 2))
    assert len(scale) == 1  # every bar's height is its value on the same axis
    table = [[c.text for c in row.all() if c.tag in ("th", "td")]
             for row in page.one(data_testid="by-day-table").one("tbody").all("tr")]
    assert table == [[d["day"], str(d["entered"]), str(d["conversions"]["treatment"]),
                      str(d["conversions"]["holdout"])] for d in metrics["by_day"]]

    # treatment against the holdout: rates with error bars, the lift, "not yet significant"
    holdout = metrics["holdout"]
    (treatment,) = holdout["arms"]
    assert treatment["lift_significant"] is False
    check_experiment(page.one(data_testid="holdout"), holdout, "holdout")
    lift = page.one(data_testid="holdout-lift").one("g", class_="row")
    assert lift.one("text", class_="note").text == "not yet significant"
    assert "significant" not in lift["class"].split()

    # the split's variants, with the summary and (not yet) a winner
    assert list(metrics["variants"]) == ["pick_tips"]
    variants = metrics["variants"]["pick_tips"]
    assert [a["name"] for a in variants["arms"]] == ["short", "long"]
    assert sum(a["customers"] for a in variants["arms"]) == len(trial.treated) - 1  # the leaver
    split = page.one(data_testid="split-card", data_step="pick_tips")
    check_experiment(split, variants, "variants-pick_tips")
    assert variants["winner"] is None

    # each step: kind, reached, on it now, outcomes, suppressed by reason code, paths
    rows = page.one(data_testid="steps").all("tr", data_testid="step-row")
    assert [r["data-step"] for r in rows] == [s["id"] for s in metrics["steps"]]
    for row, step in zip(rows, metrics["steps"], strict=True):
        def cell(col: str, row: Node = row) -> Node:
            return row.one("td", data_col=col)

        assert (cell("kind").text, cell("reached").text, cell("current").text) == (
            step["kind"].replace("_", " "), str(step["reached"]), str(step["current"]))
        for col, counts in (("outcomes", step["outcomes"]),
                            ("suppressed", step["suppressed_by"]), ("paths", step["paths"])):
            shown = [c.text for c in cell(col).all("span")]
            assert shown == chips(counts), (step["id"], col)
    suppressed_steps = [s for s in metrics["steps"] if s["suppressed_by"]]
    assert len(suppressed_steps) == 1 and sum(suppressed_steps[0]["suppressed_by"].values()) == 1

    # exits by reason, messages sent and suppressed by reason code
    check_hbars(page.one(data_testid="exits"), list(metrics["exited"].items()))
    assert page.one(data_testid="messages").text == (
        f"{metrics['messages_sent']} sent · {metrics['messages_suppressed']} suppressed by "
        "the policy")
    check_hbars(page.one(data_testid="suppressed"), list(metrics["suppressed_by"].items()))


def test_the_journeys_page_lists_every_journey_in_force(
    trial_container: Container, clock: FixedClock,
) -> None:
    with running_server(trial_container) as base, client(base) as api:
        run_trial(trial_container, clock, api)
        listed = api.get("/v1/journeys").json()
        metrics = api.get(f"/v1/journeys/{JOURNEY}/metrics").json()
        with console(base, "ops-key") as browser:
            response = browser.get("/console/journeys")
            assert response.status_code == 200
            page = parse(response.text)
            # the link leads to the journey's page
            link = page.one("a", class_="journey-link")
            assert browser.get(link["href"]).status_code == 200

    rows = page.one(data_testid="journeys").all("tr", data_testid="journey-row")
    assert [(r["data-journey"], r["data-kind"]) for r in rows] == [
        (j["name"], j["kind"]) for j in listed] == [("demo_alert", "one_step"),
                                                    (JOURNEY, "steps")]
    one_step, steps = rows

    def cell(row: Node, col: str) -> str:
        return row.one("td", data_col=col).text

    assert link["href"] == f"/console/journeys/{JOURNEY}"
    assert steps.one("a")["href"] == link["href"] and one_step.all("a") == []
    assert cell(one_step, "kind") == "one step"
    assert cell(one_step, "trigger") == "demo_requested"
    assert (cell(one_step, "goal"), cell(one_step, "holdout")) == ("—", "—")
    assert cell(one_step, "one-step") == "one step: no steps to measure"
    assert cell(steps, "kind") == f"{len(listed[1]['steps'])} steps"
    assert cell(steps, "trigger") == listed[1]["trigger"] == "trial_started"
    assert cell(steps, "goal") == metrics["goal"] == "subscription_started within 14 days"
    assert cell(steps, "holdout") == pct(listed[1]["holdout_share"]) == "30.0%"
    assert (cell(steps, "entered"), cell(steps, "active"), cell(steps, "conversions")) == (
        str(metrics["entered"]), str(metrics["active"]), str(metrics["conversions"]))
    assert cell(steps, "rate") == pct(metrics["conversions"] / metrics["entered"])
    assert steps.one("meter")["value"] == str(metrics["conversions"] / metrics["entered"])


def test_a_journey_without_steps_or_unknown_is_a_404_like_the_api(
    trial_container: Container,
) -> None:
    with running_server(trial_container) as base, client(base) as api, \
            console(base, "ops-key") as browser:
        for name, message, api_status in [
            ("demo_alert", "journey 'demo_alert' has one step (actions, no steps): it has no "
                           "steps to measure", 404),
            ("no_such_journey", "no journey named 'no_such_journey'", 404),
            # not a name the journeys file allows: the API refuses the path itself
            ("Not-A-Name", "no journey named 'Not-A-Name'", 422),
        ]:
            page = browser.get(f"/console/journeys/{name}")
            assert page.status_code == 404, name
            assert parse(page.text).one(data_testid="error").text == message
            assert parse(page.text).one(data_testid="back")["href"] == "/console/journeys"
            assert api.get(f"/v1/journeys/{name}/metrics").status_code == api_status
        # before anyone entered, a journey with steps has its page, with nothing in it yet
        empty = browser.get(f"/console/journeys/{JOURNEY}")
        assert empty.status_code == 200
        funnel = parse(empty.text).one(data_testid="funnel")
        assert {int(b["data-value"]) for b in funnel.all("g", class_="bar")} == {0}
        assert parse(empty.text).one(data_testid="by-day").one("text", class_="empty").text == (
            "Nobody has entered yet.")
        assert parse(empty.text).one(data_testid="tile-time").text == (
            "— time to convert, median nobody has converted yet")


def test_journeys_need_an_admin_key_as_in_the_api(trial_container: Container) -> None:
    with running_server(trial_container) as base, console(base, "alice-key") as browser:
        inbox = parse(browser.get("/console").text)
        assert inbox.all(data_testid="nav-journeys") == []  # no link to a page she cannot see
        for path in ("/console/journeys", f"/console/journeys/{JOURNEY}"):
            page = browser.get(path)
            assert page.status_code == 403
            assert "admin scope" in parse(page.text).one(data_testid="error").text
        with httpx.Client(base_url=base, follow_redirects=False) as stranger:
            signed_out = stranger.get("/console/journeys")
            assert signed_out.status_code == 303
            assert signed_out.headers["location"] == (
                "/console/login?next=%2Fconsole%2Fjourneys")
