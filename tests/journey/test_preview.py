"""`journey journeys preview`: a journey run over the database's customers (or a synthetic
population) in simulated time, with the real stepper and policy gate on a throwaway copy,
sending nothing and writing nothing to the real database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from cli import app
from core.domain import Identity
from core.settings import get_settings
from journey.preview import preview, synthetic_population
from memory import db
from policy.journeys import load_journeys
from tests.conftest import ContainerFactory
from tests.journey.test_journey_steps import GUIDE

#: 15:00 UTC: 10:00 in New York, 00:00 in Tokyo (quiet hours there)
START = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)


@pytest.fixture
def guide(tmp_path: Path) -> Path:
    path = tmp_path / "journeys.yaml"
    path.write_text(GUIDE)
    return path


def _three(container: Any) -> dict[str, str]:
    """A New Yorker who can be emailed, a Tokyo customer (it is midnight there), one who never
    gave marketing consent and one who withdrew it."""
    store = container.store
    people = {}
    for key, zone, marketing in (("ny", "America/New_York", "granted"),
                                 ("tokyo", "Asia/Tokyo", "granted"),
                                 ("unasked", "Europe/London", "unknown"),
                                 ("revoked", "Europe/Paris", "revoked")):
        people[key] = store.create_customer(
            [Identity(kind="email", value=f"{key}@example.com")], "consideration",
            name=f"{key.title()} Person", timezone=zone,
            consent={"email": {"service": "granted", "marketing": marketing}}).id
    return people


def _counts(container: Any) -> dict[str, int]:
    with container.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (db.jobs, db.outbox, db.decisions, db.enrolments, db.messages)}


def test_preview_says_what_each_customer_would_get_and_changes_nothing(
    make_container: ContainerFactory, guide: Path,
) -> None:
    container = make_container(journeys_path=guide)
    people = _three(container)
    before = _counts(container)
    profiles = [p for p in (container.store.get_customer(c) for c in people.values()) if p]
    # the holdout is decided by the customer's id: force everyone into the treatment
    text = GUIDE.replace("holdout: {share: 0.5, goto: static_wait}", "")
    draft = guide.with_name("draft.yaml")
    draft.write_text(text)
    result = preview(container.settings, "guide_followup", profiles, journeys_file=draft,
                     start=START, source="test")
    # the real database is untouched: no job, message, decision or enrolment
    assert _counts(container) == before
    rows = {c: [r for r in result.rows if r.customer_id == c] for c in people.values()}

    def sends(key: str) -> list[Any]:
        return [r for r in rows[people[key]] if r.step == "nurture"]

    (ny,) = sends("ny")
    assert (ny.outcome, ny.target, ny.reasons) == ("would_send", "email", ["allowed"])
    assert ny.at == datetime(2026, 11, 4, 15, 0, tzinfo=UTC)  # after the day's wait
    (tokyo,) = sends("tokyo")
    assert tokyo.outcome == "deferred" and tokyo.reasons == ["quiet_hours_deferred"]
    assert tokyo.deliver_at is not None and tokyo.deliver_at.astimezone(UTC).hour == 23  # 08:00
    (unasked,) = sends("unasked")
    assert (unasked.outcome, unasked.reasons) == ("suppressed", ["no_consent"])
    # who opted out leaves the journey at its first step: nothing is even tried
    assert sends("revoked") == []
    assert [(r.outcome, r.detail) for r in rows[people["revoked"]]][-1] == ("exited", "opt_out")
    assert result.suppressed_by == {"no_consent": 1}
    assert result.by_arm == {"treatment": 4, "holdout": 0}
    # nobody bought in the preview: the others waited for the goal until the timeout
    assert result.exits == {"exit:no_checkout": 3, "opt_out": 1}
    assert [r.outcome for r in rows[people["ny"]]] == [
        "entered", "waited", "branch", "would_send", "timeout", "exited"]


def test_a_synthetic_population_is_seeded_and_the_holdout_gets_the_static_email(
    make_container: ContainerFactory, guide: Path,
) -> None:
    container = make_container(journeys_path=guide)
    people = synthetic_population(60, seed=3, start=START)
    assert [p.timezone for p in people] == [p.timezone for p in synthetic_population(
        60, seed=3, start=START)]
    result = preview(container.settings, "guide_followup", people, start=START,
                     source="synthetic")
    holdout = {r.customer_id for r in result.rows if r.arm == "holdout"}
    assert result.by_arm["holdout"] == len(holdout) > 0
    for r in result.rows:
        if r.outcome in ("would_send", "deferred"):
            assert r.step == ("static_nurture" if r.customer_id in holdout else "nurture")
    would = result.count("would_send") + result.count("deferred")
    # opted out: marketing withdrawn and granted on no channel (SMS may still be granted)
    revoked = {p.id for p in people if p.consent["email"].marketing == "revoked"
               and "sms" not in p.consent}
    unasked = {p.id for p in people if p.consent["email"].marketing == "unknown"
               and "sms" not in p.consent}
    assert revoked and unasked
    # the exits hold for the control's static schedule too
    assert result.exits.get("opt_out", 0) == len(revoked)
    # the treated with a buying signal go to sales; everyone else either gets the email
    # (or an SMS instead) or is refused it for want of consent
    escalated = result.count("would_escalate")
    assert escalated > 0
    assert would + result.count("suppressed") + escalated == 60 - len(revoked)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's

    def invoke(url: str, journeys: Path, *args: str) -> Result:
        get_settings.cache_clear()
        env = {"JOURNEY_DATABASE_URL": url, "JOURNEY_DATA_DIR": str(tmp_path / "cli-data"),
               "JOURNEY_BRAIN": "rules", "JOURNEY_JOURNEYS_PATH": str(journeys),
               "COLUMNS": "200"}
        try:
            return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()

    yield invoke


def test_the_command_prints_the_timeline_and_writes_the_html_report(
    make_container: ContainerFactory, guide: Path, run: Any, tmp_path: Path,
) -> None:
    container = make_container(journeys_path=guide)
    _three(container)
    report = tmp_path / "preview.html"
    done = run(container.settings.database_url, guide, "journeys", "preview", "guide_followup",
               "--start", "2026-11-03T15:00:00", "--html", str(report))
    assert done.exit_code == 0, done.output
    printed = " ".join(done.output.split())  # as wrapped for the terminal's width
    assert "over 4 customers (the database's first 4)" in printed
    assert "no_consent" in printed and "nothing was sent" in printed
    page = report.read_text()
    assert "<svg" in page and 'data-testid="day-chart"' in page
    assert "Preview: guide_followup" in page and "no_consent" in page
    assert page.count('<details data-customer=') == 4
    missing = run(container.settings.database_url, guide, "journeys", "preview", "nope")
    assert missing.exit_code == 1 and "no journey 'nope'" in missing.output
    assert "guide_followup" in missing.output


def test_the_shipped_guide_journey_previews_without_a_database(tmp_path: Path) -> None:
    """`--synthetic` needs no customers: a new user can preview the shipped journey at once."""
    journeys = load_journeys()
    assert journeys.get("guide_to_sales") is not None
    settings = get_settings().model_copy(update={
        "database_url": f"sqlite:///{tmp_path / 'unused.sqlite'}", "data_dir": tmp_path})
    result = preview(settings, "guide_to_sales", synthetic_population(40, 1, START),
                     start=START)
    assert result.customers == 40 and result.by_arm["holdout"] > 0
    assert result.count("would_send") + result.count("deferred") > 0
