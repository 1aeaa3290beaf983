"""`journey customers erase` as a user runs it: a real subprocess on real stores, then the data
dir read byte by byte for the erased customer."""

from __future__ import annotations

import getpass
import json
import sqlite3
from pathlib import Path

from tests.cli.test_cli import run

EMAIL = "carol.vantablack@example.com"
TRACES = (b"vantablack", b"quasargarden")


def traces(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes().lower()
        hits = [t.decode() for t in TRACES if t in data]
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def customer_id(data: Path) -> str:
    with sqlite3.connect(data / "journey.sqlite") as conn:
        row = conn.execute("SELECT customer_id FROM identities WHERE value = ?",
                           (EMAIL,)).fetchone()
    assert row is not None
    return str(row[0])


def test_erase_asks_then_removes_the_customer_from_every_file(tmp_path: Path) -> None:
    chat = run(["chat", "--brain", "rules", "--email", EMAIL], tmp_path,
               stdin="What does the Growth plan include for the quasargarden project?\n")
    assert chat.returncode == 0, chat.stderr
    data = tmp_path / "data"
    who = customer_id(data)
    before = traces(data)  # the scan sees them first: the store, the checkpoints, Chroma
    assert any(f.startswith("journey.sqlite") for f in before), before
    assert any(f.startswith("checkpoints.sqlite") for f in before), before
    assert "chroma/chroma.sqlite3" in before, before

    refused = run(["customers", "erase", who], tmp_path, stdin="n\n")
    assert refused.returncode == 1 and "Aborted" in refused.stdout + refused.stderr
    assert customer_id(data) == who  # nothing was erased

    erased = run(["customers", "erase", who, "--yes"], tmp_path)
    assert erased.returncode == 0, erased.stderr
    record = json.loads(erased.stdout)
    assert record["customer_id"] == who and record["already"] is False
    assert record["by"] == f"cli:{getpass.getuser()}"
    assert record["counts"]["customers"] == 1 and record["counts"]["messages"] >= 2
    assert record["counts"]["checkpoint_threads"] >= 1
    assert record["counts"]["vector_records"] >= 2
    assert traces(data) == {}
    for wal in data.rglob("*-wal"):
        assert wal.stat().st_size == 0, wal

    again = run(["customers", "erase", who, "--yes", "--by", "dpo@acme.example"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {**record, "already": True}

    unknown = run(["customers", "erase", "cus_nobody", "--yes"], tmp_path)
    assert unknown.returncode == 1 and "no customer 'cus_nobody'" in unknown.stderr
