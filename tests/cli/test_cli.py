"""The `journey` command as a user runs it: a real subprocess, real stores, piped input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

JOURNEY = Path(sys.executable).with_name("journey")


def run(args: list[str], tmp_path: Path, stdin: str = "",
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "JOURNEY_DATA_DIR": str(tmp_path / "data"),
        "JOURNEY_DATABASE_URL": "",
        "JOURNEY_BRAIN": "rules",
        "COLUMNS": "200",
        "ORT_DISABLE_TELEMETRY": "1",
        **(env or {}),
    }
    return subprocess.run(
        [str(JOURNEY), *args], input=stdin, capture_output=True, text=True, env=env,
        cwd=tmp_path, timeout=180,
    )


def test_help_explains_every_command(tmp_path: Path) -> None:
    out = run(["--help"], tmp_path)
    assert out.returncode == 0
    for command in ("serve", "chat", "seed-demo", "init"):
        assert command in out.stdout
    chat_help = run(["chat", "--help"], tmp_path).stdout
    assert "--brain" in chat_help and "/channel" in chat_help


def test_chat_with_the_rules_brain_shows_replies_and_the_decision_trace(tmp_path: Path) -> None:
    out = run(
        ["chat", "--brain", "rules", "--email", "dana@example.com"],
        tmp_path,
        stdin="I want to talk to a person about my invoice\n",
    )
    assert out.returncode == 0, out.stderr
    assert "connecting you with our support team" in out.stdout
    assert "human_request" in out.stdout
    assert "escalate_to_human" in out.stdout and '"queue": "support"' in out.stdout

    sales = run(
        ["chat", "--brain", "rules", "--email", "sam@example.com"],
        tmp_path,
        stdin="We're 500 seats and need SSO and a quote\nwhat does the Growth plan include?\n",
    )
    assert sales.returncode == 0, sales.stderr
    assert "buying_signal" in sales.stdout
    assert '"queue": "sales"' in sales.stdout and '"seats": 500' in sales.stdout
    # the second message goes to the human who now owns the conversation: the bot is silent
    assert "handoff_active" in sales.stdout


def test_init_writes_a_key_and_seed_demo_is_idempotent(tmp_path: Path) -> None:
    assert run(["init"], tmp_path).returncode == 0
    env_file = (tmp_path / ".env").read_text()
    assert "JOURNEY_API_KEYS=" in env_file and "JOURNEY_CLI_API_KEY=jo_" in env_file
    first = run(["seed-demo"], tmp_path)
    second = run(["seed-demo"], tmp_path)
    assert first.returncode == second.returncode == 0, first.stderr
    assert "4 customers, 5 events, 4 past messages" in second.stdout
    # the buyer's-guide journey's three weeks are simulated once, for the console to show
    assert "Journey guide_to_sales: 200 customers simulated" in " ".join(first.stdout.split())
    assert "guide_to_sales" not in second.stdout
    metrics = run(["journeys", "metrics", "guide_to_sales", "--json"], tmp_path)
    assert metrics.returncode == 0, metrics.stderr
    body = json.loads(metrics.stdout)
    assert body["entered"] == 200 and body["active"] == 0
    assert body["by_arm"]["holdout"] > 0 and body["holdout"]["holdout"]["customers"] > 0
    # two of the demo's messages ask for people: one to support (a complaint by SMS after an
    # email), one routed to key_accounts (a customer worth 84,000); seeding twice keeps two
    listed = run(["handoffs", "list"], tmp_path).stdout
    rows = sorted(line for line in listed.splitlines() if "hof_" in line)
    assert len(rows) == 2
    assert any("Marco Rossi" in r and "support" in r and "high" in r and "sms" in r
               for r in rows)
    assert any("Sam Lee" in r and "key_accounts" in r and "high" in r for r in rows)


def test_handoffs_list_and_metrics(tmp_path: Path) -> None:
    """A customer asks for a person; `journey handoffs` shows the open handoff with its SLA
    badge, and the metrics count it."""
    chat = run(["chat", "--brain", "rules", "--email", "dana@example.com"], tmp_path,
               stdin="I want to talk to a person about my invoice\n")
    assert chat.returncode == 0, chat.stderr
    listed = run(["handoffs", "list"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if "hof_" in line]
    assert "support" in row and "open" in row
    assert "claim in 9m" in row or "claim in 10m" in row
    assert run(["handoffs", "list", "--status", "bogus"], tmp_path).returncode == 2
    metrics = run(["handoffs", "metrics"], tmp_path)
    assert metrics.returncode == 0, metrics.stderr
    [support] = [line for line in metrics.stdout.splitlines() if "support" in line]
    assert "1 (1 active)" in support and "0 / 0" in support


def test_serve_with_several_processes_refuses_the_embedded_stores(tmp_path: Path) -> None:
    """`journey serve --workers 2` needs stores every process can share: on the embedded SQLite
    file and Chroma directory it refuses at once, saying what to set (nothing is started)."""
    out = run(["serve", "--workers", "2"], tmp_path)
    assert out.returncode == 2
    said = " ".join((out.stdout + out.stderr).split())
    assert "several processes share the stores" in said
    assert "JOURNEY_DATABASE_URL" in said and "JOURNEY_CHROMA_URL" in said
    assert not (tmp_path / "data" / "journey.sqlite").exists()
    # PostgreSQL alone is not enough: the vector memory must be a Chroma server too (the URL
    # is never reached: the refusal comes first)
    env_pg = {"JOURNEY_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    out = run(["serve", "--workers", "2"], tmp_path, env=env_pg)
    assert out.returncode == 2
    said = " ".join((out.stdout + out.stderr).split())
    assert "JOURNEY_CHROMA_URL" in said and "JOURNEY_DATABASE_URL" not in said


def test_invalid_settings_are_named_not_a_traceback(tmp_path: Path) -> None:
    region = run(["serve"], tmp_path, env={"JOURNEY_DEFAULT_PHONE_REGION": "XX"})
    assert region.returncode == 2
    assert "invalid settings" in region.stderr and "Traceback" not in region.stderr
    assert "JOURNEY_DEFAULT_PHONE_REGION: 'XX' is not a region" in " ".join(region.stderr.split())
    pool = run(["serve"], tmp_path, env={
        "JOURNEY_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/unused",
        "JOURNEY_WORKERS": "16"})
    assert pool.returncode == 2 and "Traceback" not in pool.stderr
    assert "JOURNEY_WORKERS (16) = 22 turns at once" in " ".join(pool.stderr.split())


def test_worker_refuses_more_threads_than_the_pool_holds(tmp_path: Path) -> None:
    """Each worker thread runs a turn, and a turn holds two pooled PostgreSQL connections: on
    PostgreSQL `journey worker --threads 12` would deadlock its pool, so it refuses before
    connecting (the URL is never reached), naming the limit and what to do instead."""
    env_pg = {"JOURNEY_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    out = run(["worker", "--threads", "12"], tmp_path, env=env_pg)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    said = " ".join((out.stdout + out.stderr).split())
    assert "--threads 12" in said and "at most 9" in said and "more `journey worker`" in said
    assert "Loading" not in out.stdout
