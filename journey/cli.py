"""The ``journey`` command line: serve the API, chat as a customer, seed the demo data."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from core.settings import Settings, get_settings

app = typer.Typer(
    help="journey-orchestrator: a real-time, policy-checked LLM decision layer for customer "
    "journeys.\n\nTypical use: `journey init` once, `journey seed-demo`, `journey serve`, then "
    "`journey chat` in a second terminal. Settings come from JOURNEY_* variables and .env "
    "(see README.md, Configuration).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


@app.command()
def init(
    path: Annotated[Path, typer.Option(help="Where to write the settings file.")] = Path(".env"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a .env with a fresh random API key (admin scope) that `journey chat` also uses."""
    if path.exists() and not force:
        console.print(f"{path} exists; keeping it (use --force to overwrite).")
        return
    key = "jo_" + secrets.token_urlsafe(24)
    path.write_text(
        "# journey-orchestrator settings (see README.md, Configuration)\n"
        f"JOURNEY_API_KEYS={json.dumps({key: {'name': 'admin', 'scopes': ['admin']}})}\n"
        f"JOURNEY_CLI_API_KEY={key}\n",
        encoding="utf-8",
    )
    console.print(f"Wrote {path} with a new admin API key.")


@app.command("seed-demo")
def seed_demo() -> None:
    """Load the demo customers, their events and a few past conversations (idempotent)."""
    from journey.demo import seed
    from journey.runtime import build_container

    # the demo's past turns are history, decided offline: no model is started for them
    settings = get_settings().model_copy(update={"brain": "rules"})
    with console.status("Loading the embedding model and the stores…"):
        container = build_container(settings)
    try:
        summary = seed(container, progress=True)
    finally:
        container.close()
    console.print(
        f"Demo data ready in {settings.resolved_database_url}: "
        f"{summary['customers']} customers, {summary['events']} events, "
        f"{summary['turns']} past messages."
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: JOURNEY_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: JOURNEY_PORT).")] = None,
) -> None:
    """Run the API server in the foreground (Ctrl+C stops it)."""
    import uvicorn

    from api.app import create_app

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    base = f"http://{host}:{port}"
    brain = settings.resolved_brain
    if brain == "local" and not _prepare_local_model(settings):
        settings = settings.model_copy(update={"brain": "rules"})
        brain = "rules"
    console.print(f"[bold]journey-orchestrator[/bold] on {base}  (brain: {brain})")
    if brain == "rules":
        console.print(
            "  No LLM (set JOURNEY_LLM_BASE_URL / JOURNEY_LLM_API_KEY, or install the local "
            "model with `make install`): the offline rules brain decides."
        )
    if brain == "local":
        console.print(f"  The local model starts on 127.0.0.1:{settings.local_port} "
                      "(first start: about 5 s to load).")
    console.print(f"  API docs:  {base}/docs")
    console.print("  Chat:      run `journey chat` in a second terminal "
                  f"(or `.venv/bin/journey chat`), or open {base}/chat")
    console.print(f"  Inbox:     {base}/console (sign in with an API key that has the inbox "
                  "or admin scope, e.g. JOURNEY_CLI_API_KEY in .env)")
    console.print(f"  Workers:   {settings.workers} (queued turns, journeys, the outbox relay)"
                  + ("; run `journey worker` for more" if settings.workers else
                     "; run `journey worker` to deliver anything"))
    if not (settings.smtp_host and settings.twilio_account_sid):
        console.print(f"  Channels:  unconfigured ones write to "
                      f"{settings.data_dir / 'outbox'}/<channel>.jsonl (see README, Channels)")
    if not settings.api_keys:
        console.print("  [yellow]No API keys configured: run `journey init` first.[/yellow]")
    # open web-chat streams must not hold Ctrl+C for minutes
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=5)


@app.command()
def worker(
    threads: Annotated[int, typer.Option(min=1, max=16, help="Worker threads.")] = 1,
) -> None:
    """Run workers without the API: queued turns, journey wake-ups, the outbox relay.

    Any number of worker processes can share one PostgreSQL database (rows are claimed with
    FOR UPDATE SKIP LOCKED); with SQLite, one process is enough. Ctrl+C stops them."""
    import signal
    import threading

    from journey.runtime import build_container

    settings = get_settings()
    if settings.resolved_brain == "local":
        # workers run queued turns; the local model is started by `journey serve`
        settings = settings.model_copy(update={"brain": "rules"})
    with console.status("Loading the embedding model and the stores…"):
        container = build_container(settings)
    pool = container.make_workers(threads, prefix="cli").start()
    console.print(f"{threads} worker(s) on {container.engine.dialect.name}; Ctrl+C stops.")
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(5.0):
            counts = container.store.outbox_queue.counts()
            jobs = container.store.jobs.counts()
            console.print(f"jobs {jobs}  outbox {counts}", highlight=False)
    finally:
        pool.stop()
        container.close()


outbox_app = typer.Typer(
    help="The outbox: what is queued, sent, dead-lettered; replay the dead letters.",
    no_args_is_help=True,
)
app.add_typer(outbox_app, name="outbox")


def _store() -> Any:
    from journey import migrate
    from journey.db import make_engine
    from journey.store import Store

    engine = make_engine(get_settings().resolved_database_url)
    migrate.upgrade(engine)
    return Store(engine)


@outbox_app.command("list")
def outbox_list(
    status: Annotated[str | None, typer.Option(
        help="pending, scheduled, sending, sent, dead or cancelled.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Counts by status, then the rows (newest last) with their last error."""
    store = _store()
    queue = store.outbox_queue
    console.print(f"outbox: {queue.counts()}", highlight=False)
    table = Table("id", "channel", "status", "attempts", "due", "last error")
    for row in queue.list(status=status, limit=limit):
        due = row.next_attempt_at.isoformat(timespec="seconds") if row.next_attempt_at else ""
        table.add_row(row.id, row.channel, row.status, str(row.attempts), due,
                      (row.last_error or "")[:60])
    console.print(table)


@outbox_app.command("replay")
def outbox_replay(
    ids: Annotated[list[str] | None, typer.Argument(help="Dead rows to replay (all if none).")]
    = None,
) -> None:
    """Put dead-lettered messages back in the queue, due now with fresh attempts. A running
    worker delivers them; their idempotency keys stop a provider from sending one twice."""
    store = _store()
    replayed = store.outbox_queue.replay(list(ids or []) or None)
    console.print(f"replayed {replayed} dead-lettered message(s)")


handoffs_app = typer.Typer(
    help="The human inbox from the command line: handoffs with their SLA timers, and the "
    "handoff metrics. Agents work the inbox in the web console (/console) or the API.",
    no_args_is_help=True,
)
app.add_typer(handoffs_app, name="handoffs")


def _handoffs() -> Any:
    from journey.handoffs import HandoffService
    from journey.lifecycle import load_lifecycle
    from policy.loader import PolicyProvider

    return HandoffService(_store(), PolicyProvider(get_settings().policy_path),
                          load_lifecycle().stages)


@handoffs_app.command("list")
def handoffs_list(
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    status: Annotated[str, typer.Option(
        help="open, claimed, resolved, returned, active (open or claimed) or closed.")]
    = "active",
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Handoffs, newest first: queue, priority, status, who holds it, the SLA badge."""
    from journey.handoffs import STATUSES, Agent

    if status not in STATUSES:
        raise typer.BadParameter(f"status must be one of {', '.join(STATUSES)}")
    colours = {"ok": "green", "due_soon": "yellow", "breached": "red", "met": "green",
               "missed": "red"}
    table = Table("id", "customer", "queue", "priority", "status", "assignee", "channel",
                  "SLA", "unread")
    for h in _handoffs().list(Agent(name="cli"), queue=queue, status=status, limit=limit):
        sla = h.claim_sla if h.status == "open" else h.resolve_sla
        table.add_row(h.id, h.customer_name or h.customer_id, h.queue, h.priority, h.status,
                      h.assignee or "", h.channel or "",
                      f"[{colours[sla.state]}]{sla.label}[/]", str(h.unread or ""))
    console.print(table)


@handoffs_app.command("metrics")
def handoffs_metrics(
    days: Annotated[int, typer.Option(min=1, help="Handoffs created in the last N days.")] = 30,
) -> None:
    """Per queue: time to claim and resolve (p50/p90), SLAs, resolved vs returned to the bot."""
    from datetime import UTC, datetime, timedelta

    from journey.handoffs import human_duration

    def took(median: float | None, p90: float | None) -> str:
        if median is None or p90 is None:
            return "-"
        return f"{human_duration(median)} / {human_duration(p90)}"

    metrics = _handoffs().metrics(since=datetime.now(UTC) - timedelta(days=days))
    table = Table("queue", "handoffs", "resolved / returned", "claim p50 / p90",
                  "resolve p50 / p90", "claim SLA met", "breached")
    for m in [*metrics.queues, metrics.total]:
        claims = m.claim_sla_met + m.claim_sla_missed
        table.add_row(
            m.queue, f"{m.created} ({m.open + m.claimed} active)",
            f"{m.resolved_by_human} / {m.returned_to_bot}",
            took(m.time_to_claim.median_s, m.time_to_claim.p90_s),
            took(m.time_to_resolve.median_s, m.time_to_resolve.p90_s),
            f"{m.claim_sla_met}/{claims}" if claims else "-", str(m.breached_now),
        )
    console.print(table)
    if metrics.total.outcomes:
        console.print("outcomes: " + ", ".join(
            f"{k} {v}" for k, v in sorted(metrics.total.outcomes.items())), highlight=False)


def _trace(result: dict[str, Any]) -> None:
    decision = result["decision"]
    brain = decision["brain"]
    who = brain["name"] + (f" ({brain['model']})" if brain.get("model") else "")
    if brain.get("fallback_reason"):
        who += f" [fallback: {brain['fallback_reason'][:80]}]"
    console.print(
        f"[dim]intent[/dim] {decision['intent']} ({decision['intent_confidence']:.2f})  "
        f"[dim]stage[/dim] {decision['previous_stage']} → {decision['stage']}  "
        f"[dim]sentiment[/dim] {decision['sentiment']}  [dim]brain[/dim] {who}  "
        f"[dim]{decision['latency_ms']:.0f} ms[/dim]"
    )
    table = Table(show_header=True, header_style="dim", box=None, pad_edge=False)
    for col in ("action", "verdict", "reasons", "arguments"):
        table.add_column(col)
    for action in result["actions"]:
        shown = action.get("final") or action["arguments"]  # what runs, after the policy
        args = {k: v for k, v in shown.items() if v not in (None, {}, [], "")}
        if action["tool"] == "send_message":
            args.pop("text", None)
        colour = {"allow": "green", "modify": "yellow", "deny": "red"}[action["outcome"]]
        outcome = f"[{colour}]{action['outcome']}[/{colour}]"
        if action.get("approval_id"):
            outcome += f" [yellow](awaits approval {action['approval_id']})[/yellow]"
        if action.get("deliver_at"):
            outcome += f" [yellow](at {action['deliver_at']})[/yellow]"
        table.add_row(
            action["tool"] + (" [dim](policy)[/dim]" if action.get("added_by_policy") else ""),
            outcome,
            ", ".join(action["reason_codes"]),
            json.dumps(args, ensure_ascii=False)[:160],
        )
    console.print(table)


@app.command()
def chat(
    channel: Annotated[
        str, typer.Option(help="web_chat, email, sms or whatsapp. Switch with /channel NAME.")
    ] = "web_chat",
    email: Annotated[str | None, typer.Option(help="Your email (needed on email).")] = None,
    phone: Annotated[str | None, typer.Option(help="Your phone (needed on sms/whatsapp).")] = None,
    web_chat_id: Annotated[str | None, typer.Option(help="Your web-chat id.")] = None,
    name: Annotated[str | None, typer.Option(help="Your name, for a new profile.")] = None,
    brain: Annotated[
        str | None,
        typer.Option(help="Run the agent in this process with this brain (rules, local or openai) "
                     "instead of talking to the server."),
    ] = None,
    server: Annotated[str | None, typer.Option(help="Server URL (default: JOURNEY_SERVER_URL).")]
    = None,
) -> None:
    """Talk to the agent as a customer; each reply is followed by its decision trace.

    Type a message and press Enter. /channel sms switches channel, /quit leaves. Messages can
    also be piped in, one per line.
    """
    settings = get_settings()
    if not web_chat_id:
        # the terminal is this customer's web chat; the same email or phone keeps one identity
        web_chat_id = "cli_" + (email or phone or secrets.token_hex(4))
    send = _local_sender(settings, brain) if brain else _http_sender(settings, server)
    interactive = sys.stdin.isatty()
    console.print(f"Chatting on [bold]{channel}[/bold] as "
                  f"{email or phone or web_chat_id}. /quit to leave.")
    while True:
        try:
            line = input("you> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        if text.startswith("/channel"):
            channel = text.split(maxsplit=1)[-1].strip()
            console.print(f"(now on {channel})")
            continue
        if not interactive:
            console.print(f"you> {text}")
        body = {
            "channel": channel,
            "customer": {"email": email, "phone": phone, "web_chat_id": web_chat_id,
                         "name": name},
            "text": text,
        }
        try:
            result = send(body)
        except ChatError as exc:
            err.print(f"[red]{exc}[/red]")
            continue
        reply = result.get("reply")
        console.print(f"[bold cyan]bot>[/bold cyan] {reply}" if reply else
                      "[bold cyan]bot>[/bold cyan] [dim](no reply)[/dim]")
        _trace(result)


class ChatError(Exception):
    pass


def _http_sender(settings: Settings, server: str | None) -> Any:
    import httpx

    base = (server or settings.resolved_server_url).rstrip("/")
    key = settings.cli_api_key.get_secret_value()
    client = httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {key}"})

    def send(body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = client.post("/v1/messages", json=body)
        except httpx.ConnectError as exc:
            raise ChatError(
                f"cannot reach the server at {base} ({exc}). Start it with `make run` or "
                "`journey serve`, or chat without it: `journey chat --brain rules`."
            ) from exc
        if response.status_code != 200:
            raise ChatError(f"{response.status_code}: {response.json().get('detail')}")
        data: dict[str, Any] = response.json()
        return data

    return send


def _prepare_local_model(settings: Settings) -> bool:
    """Assemble and verify the embedded model with a progress bar (once); False if it cannot
    be used, after saying why."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from core.settings import local_runtime_available
    from journey.localllm import LocalModelError, assemble

    if not local_runtime_available():
        err.print("[yellow]llama-cpp-python is not installed (`make install` builds it): "
                  "falling back to the rules brain.[/yellow]")
        return False
    if settings.local_model_path is not None:
        return True
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("Assembling and verifying the local model", total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            path = assemble(settings.data_dir / "models", update)
    except LocalModelError as exc:
        err.print(f"[yellow]{exc}: falling back to the rules brain.[/yellow]")
        return False
    console.print(f"  Local model: {path} (sha256 verified)")
    return True


llm_app = typer.Typer(
    help="The embedded local LLM (Qwen2.5-Coder-0.5B-Instruct via llama.cpp), or any GGUF "
    "file set in JOURNEY_LOCAL_MODEL_PATH.",
    no_args_is_help=True,
)
app.add_typer(llm_app, name="llm")


@llm_app.command("serve")
def llm_serve() -> None:
    """Assemble, verify and serve the local model on 127.0.0.1 (OpenAI-compatible) in the
    foreground; Ctrl+C stops it. `journey serve` starts it by itself when the brain is local."""
    import time

    from journey.localllm import LocalModelError, start_local

    settings = get_settings()
    if not _prepare_local_model(settings):
        raise typer.Exit(1)
    with console.status("Starting the local model…"):
        try:
            server = start_local(settings)
        except LocalModelError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
    console.print(f"Local model on {server.base_url} (any OpenAI client: base_url, any key). "
                  "Ctrl+C stops it.")
    try:
        while server.process is None or server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _local_sender(settings: Settings, brain: str) -> Any:
    from pydantic import ValidationError

    from agent.service import InboundRequest
    from journey.runtime import build_container

    if brain not in ("rules", "openai", "local"):
        raise typer.BadParameter("--brain must be rules, openai or local")
    if brain == "local" and not _prepare_local_model(settings):
        brain = "rules"
    local = settings.model_copy(update={"brain": brain})
    with console.status("Loading the agent…"):
        container = build_container(local)
    # the container owns the local model's process: close it when the chat ends
    import atexit

    atexit.register(container.close)

    def send(body: dict[str, Any]) -> dict[str, Any]:
        try:
            request = InboundRequest.model_validate(body)
        except ValidationError as exc:
            problems = "; ".join(
                str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()
            )
            raise ChatError(problems) from exc
        result = container.orchestrator.handle_message(request)
        return result.model_dump(mode="json")

    return send


policy_app = typer.Typer(
    help="Check and explain the policy (consent, caps, quiet hours, escalation, content, "
    "approvals) that the engine enforces.",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")


@policy_app.command("check")
def policy_check(
    file: Annotated[Path, typer.Argument(help="The policy YAML to check.", exists=False)],
) -> None:
    """Validate a policy file: errors name their line; warnings flag rules that cannot match
    and templates the content rules would block. Exit code 1 on errors."""
    from journey.lifecycle import load_lifecycle
    from policy.lint import lint
    from policy.loader import PolicyError, load_policy
    from prompts import load_yaml

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        err.print(f"[red]✗ {exc.source}: invalid policy[/red]")
        for problem in exc.problems:
            err.print(f"  {problem}")
        raise typer.Exit(1) from None
    intents = list(load_yaml("intents.yaml")["intents"])
    warnings = lint(policy, intents, load_lifecycle().stages)
    console.print(
        f"[green]✓[/green] {file}: policy {policy.name!r} version {policy.version} is valid "
        f"({len(policy.contact.caps)} caps, {len(policy.escalation.rules)} escalation rules, "
        f"{len(policy.content.forbidden)} forbidden claims, {len(policy.approvals)} approval "
        "rules)"
    )
    for warning in warnings:
        console.print(f"  [yellow]warning:[/yellow] {warning}")


@policy_app.command("explain")
def policy_explain(
    file: Annotated[
        Path | None,
        typer.Option(help="A policy file (default: JOURNEY_POLICY_PATH, else the built-in)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the policy as JSON.")] = False,
) -> None:
    """Print the effective policy: every default filled in, in plain words."""
    from policy.explain import explain
    from policy.loader import PolicyError, default_policy_path, load_policy

    path = file or get_settings().policy_path or default_policy_path()
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        console.print_json(policy.model_dump_json())
        return
    console.print(f"[bold]Policy {policy.name!r}[/bold] version {policy.version} from {path}\n")
    for title, table in explain(policy):
        console.print(f"[bold]{title}[/bold]")
        console.print(table)


def _add_eval() -> None:
    from evals.cli import app as eval_app

    app.add_typer(eval_app, name="eval")


_add_eval()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
