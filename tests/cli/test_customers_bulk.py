"""`journey customers import` and `export` as a user runs them (the real Typer app, real
SQLite and PostgreSQL), checked through the store, the consent ledger and the real server's
`GET /v1/customers`: bad rows reported by row and field while the good ones land, re-runs
that change nothing, rows that name one person ending as one profile, and an export that
imports into an empty database as the same profiles."""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from cli import app
from core.clock import FixedClock, sequential_ids
from core.domain import Identity
from core.settings import get_settings
from journey.bulk import Importer, read_rows
from journey.customers import CustomerService, ProfileRequest
from memory import db, migrate
from memory.db import make_engine
from memory.store import Store
from policy.lifecycle import load_lifecycle
from tests.conftest import PG_ADMIN_URL, ContainerFactory
from tests.server import client, running_server

CSV = """\
email,phone,name,timezone,locale,lifecycle_stage,channel_preference,consent.email.marketing,\
consent.email.marketing.source,consent.email.marketing.at,consent.email.marketing.evidence,\
consent.sms.service,attr.plan,attr.seats,attr.zip
Dana@Example.com,+1 (415) 555-0100,Dana Reyes,America/New_York,en-US,consideration,email,\
granted,signup-form,2026-11-01T10:00:00Z,https://example.com/signup v3,granted,Growth,12,02134
x@@y,,Broken,Mars/Olympus,,,,,,,,,,,
sam@example.com,,Sam Lee,,,decision,,revoked,,,,,Starter,"""  # row 4: no zip cell
CSV += "\n"

JSONL_ROWS: list[Any] = [
    {"identities": {"phone": "415-555-0177", "external_id": "shop-7"}, "name": "Ana Silva",
     "locale": "pt-BR", "timezone": "America/Sao_Paulo", "attributes": {"vip": True,
                                                                         "tags": ["a", "b"]},
     "consent": {"sms": {"marketing": {"status": "granted", "at": "2026-10-05T08:30:00Z",
                                       "evidence": "keyword START"}}}},
    {"identities": {"email": "ana@example.com"},
     "consent": {"email": {"service": {"status": "maybe"}}}},
    {"identities": {"email": "dana@example.com"}, "lifecycle_stage": "awareness"},
    {"identities": {"email": "DANA@example.com"}, "attributes": {"seats": 15}},
]


def _jsonl(rows: list[Any]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``run(database_url, *args)``: the ``journey`` command against that database."""
    monkeypatch.chdir(tmp_path)  # no .env of the developer's

    def invoke(url: str, *args: str) -> Result:
        get_settings.cache_clear()
        env = {"JOURNEY_DATABASE_URL": url, "JOURNEY_DATA_DIR": str(tmp_path / "cli-data"),
               "JOURNEY_BRAIN": "rules", "COLUMNS": "200"}
        try:
            return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()

    yield invoke


@pytest.fixture
def second_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """Another empty database of the same kind."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second.sqlite'}"
        return
    name = f"jo_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].split("://", 1)[1]
    yield f"postgresql+psycopg://{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _store(url: str) -> Store:
    engine = make_engine(url)
    migrate.upgrade(engine)
    return Store(engine)


def _snapshot(store: Store) -> dict[str, Any]:
    """Every row an import writes, as stored."""
    with store.engine.connect() as conn:
        return {
            table.name: sorted(
                tuple(str(v) for v in row) for row in conn.execute(select(table)).all())
            for table in (db.customers, db.identities, db.consent_events, db.profile_merges)
        }


def _profiles(store: Store) -> list[dict[str, Any]]:
    """The live profiles as a user sees them (ids and timestamps aside, also in a merge's
    evidence), with where their current consent came from."""
    out = []
    for p in store.list_customers(limit=10_000):
        if store.live_customer_id(p.id) != p.id:
            continue
        sources = {}
        for row in store.consent_ledger(p.id):
            sources[f"{row['channel']}.{row['purpose']}"] = (
                row["status"], row["source"], row["at"],
                re.sub(r"cus_\w+", "cus_…", row["evidence"] or ""))
        out.append({
            "identities": sorted((i.kind, i.value) for i in p.identities), "name": p.name,
            "attributes": p.attributes, "stage": p.lifecycle_stage,
            "consent": {k: v.model_dump() for k, v in p.consent.items()},
            "timezone": p.timezone, "locale": p.locale, "pref": p.channel_preference,
            "sources": sources,
        })
    return sorted(out, key=lambda p: p["identities"])


def _count(store: Store, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_import_csv_and_jsonl_reports_bad_rows_and_lands_the_good_ones(
    make_container: ContainerFactory, run: Any, database_url: str, tmp_path: Path,
) -> None:
    container = make_container()
    (tmp_path / "people.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "people.jsonl").write_text(_jsonl(JSONL_ROWS), encoding="utf-8")

    out = run(database_url, "customers", "import", str(tmp_path / "people.csv"), "--by", "alice")
    assert out.exit_code == 1, out.output  # some rows were refused
    assert "3 rows: 2 created, 0 updated, 0 unchanged, 0 merged, 1 refused; " \
           "3 consent ledger rows added." in out.stdout
    assert "row 3: identities.email: 'x@@y' is not an email address" in out.stdout
    report = [json.loads(line) for line in
              (tmp_path / "people.report.jsonl").read_text().splitlines()]
    assert [(r["row"], r["field"]) for r in report] == [(3, "identities.email"), (3, "timezone")]
    assert "Mars/Olympus" in report[1]["message"]

    out = run(database_url, "customers", "import", str(tmp_path / "people.jsonl"),
              "--by", "alice", "--report", str(tmp_path / "refused.jsonl"))
    assert out.exit_code == 1, out.output
    assert "4 rows: 1 created, 1 updated, 0 unchanged, 0 merged, 2 refused; " \
           "1 consent ledger rows added." in out.stdout
    report = [json.loads(line) for line in
              (tmp_path / "refused.jsonl").read_text().splitlines()]
    assert [(r["row"], r["field"]) for r in report] == [
        (2, "consent.email.service.status"), (3, "lifecycle_stage")]
    assert report[1]["message"] == ("'awareness' is before the customer's stage "
                                    "'consideration'; set force to move it back")

    store = container.store
    dana = store.find_customer(Identity(kind="phone", value="+14155550100"))
    assert dana is not None
    assert sorted((i.kind, i.value) for i in dana.identities) == [
        ("email", "dana@example.com"), ("phone", "+14155550100")]
    assert (dana.name, dana.timezone, dana.locale, dana.lifecycle_stage,
            dana.channel_preference) == ("Dana Reyes", "America/New_York", "en-US",
                                         "consideration", "email")
    # attributes merged key by key: seats from the JSONL, the rest from the CSV; a cell of
    # digits with a leading zero is text, one that is JSON is its value
    assert dana.attributes == {"plan": "Growth", "seats": 15, "zip": "02134"}
    ledger = store.consent_ledger(dana.id)
    assert [(r["channel"], r["purpose"], r["previous"], r["status"], r["source"], r["by"],
             r["evidence"]) for r in ledger] == [
        ("email", "marketing", "unknown", "granted", "signup-form", "alice",
         "https://example.com/signup v3"),
        ("sms", "service", "unknown", "granted", "import", "alice", None)]
    assert ledger[0]["at"] == datetime(2026, 11, 1, 10, 0, tzinfo=UTC)

    ana = store.find_customer(Identity(kind="external_id", value="shop-7"))
    assert ana is not None and ana.identity("phone") == "+14155550177"
    assert ana.attributes == {"vip": True, "tags": ["a", "b"]}
    assert [(r["source"], r["evidence"], r["at"]) for r in store.consent_ledger(ana.id)] == [
        ("import", "keyword START", datetime(2026, 10, 5, 8, 30, tzinfo=UTC))]
    # the refused rows created nothing
    assert store.find_customer(Identity(kind="email", value="ana@example.com")) is None
    assert _count(store, db.customers) == 3

    with running_server(container) as base, client(base) as api:
        got = api.get("/v1/customers", params={"email": "DANA@example.com"})
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["id"] == dana.id
        assert body["consent"]["email"] == {"service": "unknown", "marketing": "granted"}
        assert body["consent"]["sms"] == {"service": "granted", "marketing": "unknown"}
        assert body["attributes"]["seats"] == 15
        sam = api.get("/v1/customers", params={"email": "sam@example.com"}).json()
        assert (sam["name"], sam["lifecycle_stage"], sam["attributes"]) == (
            "Sam Lee", "decision", {"plan": "Starter"})
        assert sam["consent"]["email"]["marketing"] == "revoked"
        history = api.get(f"/v1/customers/{sam['id']}/consent").json()
        assert [(h["status"], h["source"], h["by"]) for h in history] == [
            ("revoked", "import", "alice")]


def test_rows_naming_one_person_make_one_profile_and_a_rerun_changes_nothing(
    make_container: ContainerFactory, run: Any, database_url: str, tmp_path: Path,
) -> None:
    container = make_container()
    rows = [
        {"identities": {"email": "kim@example.com"}, "name": "Kim",
         "attributes": {"plan": "Pro"}},
        # the same person: another spelling of the email, and a phone to link
        {"identities": {"email": " KIM@Example.com", "phone": "+44 20 7946 0958"},
         "consent": {"sms": {"service": {"status": "granted", "source": "store"}}}},
        # someone known only by a CRM id, in another batch ...
        {"identities": {"crm_id": "hs-9"}, "lifecycle_stage": "decision",
         "consent": {"email": {"marketing": {"status": "revoked", "source": "crm"}}}},
        # ... then a row that says the CRM id is Kim's: the two profiles merge
        {"identities": {"phone": "+442079460958", "crm_id": "hs-9"},
         "attributes": {"seats": 3}},
        # a second email for the merged profile
        {"identities": {"email": "kim.work@example.com", "crm_id": "hs-9"}},
    ]
    path = tmp_path / "kim.jsonl"
    path.write_text(_jsonl(rows), encoding="utf-8")
    out = run(database_url, "customers", "import", str(path), "--by", "bob",
              "--batch-size", "2")
    assert out.exit_code == 0, out.output
    assert "5 rows: 2 created, 2 updated, 0 unchanged, 1 merged, 0 refused" in out.stdout
    assert (tmp_path / "kim.report.jsonl").read_text() == ""

    store = container.store
    kim = store.find_customer(Identity(kind="crm_id", value="hs-9"))
    assert kim is not None
    assert kim.id == store.find_customer(Identity(kind="email", value="kim@example.com")).id  # type: ignore[union-attr]
    assert sorted((i.kind, i.value) for i in kim.identities) == [
        ("crm_id", "hs-9"), ("email", "kim.work@example.com"), ("email", "kim@example.com"),
        ("phone", "+442079460958")]
    assert kim.name == "Kim" and kim.lifecycle_stage == "decision"
    assert kim.attributes == {"plan": "Pro", "seats": 3}
    assert kim.consent["sms"].service == "granted"
    assert kim.consent["email"].marketing == "revoked"
    merges = store.merges(kim.id)
    assert len(merges) == 1 and merges[0]["by"] == "identity_resolution"
    assert sorted(p.id for p in store.list_customers()) == sorted(
        [kim.id, merges[0]["merged_id"]])
    sources = {(r["channel"], r["purpose"], r["source"], r["by"])
               for r in store.consent_ledger(kim.id)}
    assert ("sms", "service", "store", "bob") in sources
    assert ("email", "marketing", "crm", "bob") in sources

    before = _snapshot(store)
    again = run(database_url, "customers", "import", str(path), "--by", "bob")
    assert again.exit_code == 0, again.output
    assert "5 rows: 0 created, 0 updated, 5 unchanged, 0 merged, 0 refused; " \
           "0 consent ledger rows added." in again.stdout
    assert _snapshot(store) == before  # not a profile, identity, ledger row or updated_at


def test_export_then_import_into_an_empty_database_gives_the_same_profiles(
    run: Any, database_url: str, second_url: str, tmp_path: Path,
) -> None:
    source = tmp_path / "source.jsonl"
    source.write_text(_jsonl([
        *JSONL_ROWS[:1],
        {"identities": {"email": "dana@example.com", "web_chat_id": "wc-1"}, "name": "Dana",
         "timezone": "Europe/Paris", "lifecycle_stage": "retention", "channel_preference": "sms",
         "attributes": {"plan": "Growth", "n": 1.5, "code": "007", "quoted": '"x"',
                        "empty": "", "none": None, "nested": {"a": [1, {"b": "c"}]}},
         "consent": {"email": {"marketing": {"status": "granted", "source": "signup-form",
                                             "at": "2026-11-01T10:00:00Z", "evidence": "v3"},
                               "service": {"status": "granted"}},
                     "sms": {"marketing": {"status": "revoked", "source": "keyword"}}}},
        {"identities": {"email": "second@example.com", "phone": "+14155550199"}},
        # Ana's phone with the second profile's email: the two merge, Ana keeps two phones
        {"identities": {"email": "second@example.com", "phone": "+14155550177"}},
        {"identities": {"crm_id": "only-crm"}, "name": "Ünïcode, \"quoted\"\nname"},
    ]), encoding="utf-8")
    assert run(database_url, "customers", "import", str(source), "--by", "alice").exit_code == 0
    first = _store(database_url)
    assert len(first.merges(first.find_customer(  # type: ignore[union-attr]
        Identity(kind="email", value="second@example.com")).id)) == 1

    exported = tmp_path / "export.jsonl"
    out = run(database_url, "customers", "export", "-o", str(exported))
    assert out.exit_code == 0, out.output
    assert "exported 3 profiles (4 rows)" in out.stderr  # Ana's second phone: a row of its own
    as_csv = tmp_path / "export.csv"
    assert run(database_url, "customers", "export", "--format", "csv", "-o",
               str(as_csv)).exit_code == 0
    header = as_csv.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert "consent.email.marketing.evidence" in header and "attr.nested" in header

    out = run(second_url, "customers", "import", str(exported), "--by", "carol")
    assert out.exit_code == 0, out.output
    assert "4 rows: 3 created, 1 updated, 0 unchanged, 0 merged, 0 refused" in out.stdout
    second = _store(second_url)
    assert _profiles(second) == _profiles(first)
    # the CSV says the same: importing it over the JSON Lines changes nothing
    before = _snapshot(second)
    out = run(second_url, "customers", "import", str(as_csv), "--by", "carol")
    assert out.exit_code == 0, out.output
    assert "4 rows: 0 created, 0 updated, 4 unchanged" in out.stdout
    assert _snapshot(second) == before


def test_the_bulk_path_means_what_the_profile_api_means(
    database_url: str, second_url: str, clock: FixedClock,
) -> None:
    """The same rows through ``CustomerService.upsert`` one by one and through the import's
    batches: the same profiles, identities, merges, consent ledger and CRM sync-out events."""
    rows: list[dict[str, Any]] = [
        {"identities": {"email": "a@example.com"}, "lifecycle_stage": "consideration",
         "attributes": {"x": 1, "y": 2}, "consent": {"email": {"marketing": {
             "status": "granted", "source": "form", "at": "2026-01-02T03:04:05Z"}}}},
        {"identities": {"phone": "+1 415 555 0101"}, "name": "B", "lifecycle_stage": "decision",
         "consent": {"sms": {"marketing": {"status": "granted", "source": "kiosk"},
                             "service": {"status": "granted", "source": "kiosk"}}}},
        {"identities": {"email": "A@example.com"}, "attributes": {"y": 3}, "locale": "fr-FR",
         "consent": {"email": {"marketing": {"status": "revoked", "source": "unsubscribe"}}}},
        {"identities": {"email": "a@example.com", "phone": "4155550101"}, "name": "A+B"},
        {"identities": {"external_id": "c"}, "timezone": "Asia/Tokyo"},
        {"identities": {"external_id": "c"}, "lifecycle_stage": "churned"},
        {"identities": {"external_id": "c"}, "lifecycle_stage": "awareness", "force": True,
         "channel_preference": "whatsapp"},
        {"identities": {"external_id": "c", "web_chat_id": "w"}, "attributes": {"z": None}},
    ]
    lifecycle = load_lifecycle()
    by_api = _store_with(database_url, clock)
    by_api.sync.enabled = True
    for row in rows:
        CustomerService(by_api, lifecycle).upsert(
            ProfileRequest.model_validate(_with_source(row)), by="api-user")
    bulk = _store_with(second_url, clock)
    bulk.sync.enabled = True
    summary = Importer(CustomerService(bulk, lifecycle), by="api-user", batch_size=3).run(
        read_rows(io.StringIO(_jsonl(rows)), "jsonl"))
    assert (summary.created, summary.merged, summary.refused) == (3, 1, 0)
    assert _profiles(bulk) == _profiles(by_api)
    assert _count(bulk, db.consent_events) == _count(by_api, db.consent_events)
    assert _count(bulk, db.profile_merges) == _count(by_api, db.profile_merges) == 1
    assert _synced(bulk) == _synced(by_api)
    assert "stage.changed" in str(_synced(bulk)) and "consent.changed" in str(_synced(bulk))


def _synced(store: Store) -> list[str]:
    """The CRM sync-out events queued (a merge's activity names ids, so it is left out)."""
    with store.engine.connect() as conn:
        payloads = conn.execute(select(db.jobs.c.payload).where(db.jobs.c.kind == "sync")).scalars()
        return sorted(json.dumps([p["type"], p["data"]], sort_keys=True) for p in payloads
                      if p["type"] != "crm.activity")


def _store_with(url: str, clock: FixedClock) -> Store:
    engine = make_engine(url)
    migrate.upgrade(engine)
    return Store(engine, clock=clock, ids=sequential_ids())


def _with_source(row: dict[str, Any]) -> dict[str, Any]:
    """The API's default source is ``api``, the import's ``import``: give every row one."""
    for purposes in row.get("consent", {}).values():
        for given in purposes.values():
            given.setdefault("source", "import")
    return row


def test_help_explains_both_commands_and_a_bad_header_imports_nothing(
    run: Any, tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'help.sqlite'}"
    help_text = run(url, "customers", "import", "--help").stdout
    for needle in ("consent.<channel>.<purpose>.source", "attr.<name>", "PUT /v1/customers",
                   "journey customers import customers.csv", "--report", "--by"):
        assert needle in help_text
    assert "journey customers export -o customers.jsonl" in run(
        url, "customers", "export", "--help").stdout

    bad = tmp_path / "bad.csv"
    bad.write_text("email,emial,consent.fax.marketing\na@example.com,x,granted\n")
    out = run(url, "customers", "import", str(bad))
    assert out.exit_code == 2
    said = " ".join(out.stderr.split())  # however wide the terminal wraps it
    assert "unknown column 'emial'" in said
    assert "unknown column 'consent.fax.marketing'" in said
    assert _count(_store(url), db.customers) == 0


def test_a_row_naming_an_erased_person_is_refused_and_the_others_land(
    make_container: ContainerFactory, run: Any, database_url: str, tmp_path: Path,
) -> None:
    container = make_container()
    first = tmp_path / "first.jsonl"
    first.write_text(_jsonl([{"identities": {"email": "gone@example.com"}, "name": "Gone"}]))
    assert run(database_url, "customers", "import", str(first), "--by", "alice").exit_code == 0
    gone = container.store.find_customer(Identity(kind="email", value="gone@example.com"))
    assert gone is not None
    with running_server(container) as base, client(base) as api:
        erased = api.delete(f"/v1/customers/{gone.id}")
        assert erased.status_code == 200, erased.text

    again = tmp_path / "again.jsonl"
    again.write_text(_jsonl([
        {"identities": {"email": "kept@example.com"}, "name": "Kept"},
        {"identities": {"email": "GONE@example.com", "external_id": "x-1"}, "name": "Gone"},
    ]))
    out = run(database_url, "customers", "import", str(again), "--by", "alice")
    assert out.exit_code == 1, out.output
    assert "2 rows: 1 created, 0 updated, 0 unchanged, 0 merged, 1 refused" in out.stdout
    report = [json.loads(line) for line in
              (tmp_path / "again.report.jsonl").read_text().splitlines()]
    assert [(r["row"], r["field"]) for r in report] == [(2, "identities.email")]
    assert report[0]["message"].startswith("identity erased at ")
    store = container.store
    assert store.find_customer(Identity(kind="email", value="kept@example.com")) is not None
    assert store.find_customer(Identity(kind="email", value="gone@example.com")) is None
    assert store.find_customer(Identity(kind="external_id", value="x-1")) is None
