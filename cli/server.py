"""Set up and run: init, seed-demo, serve, worker, and the embedded local model (llm serve)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.app import app, console, err
from core.settings import PG_TURNS_AT_ONCE, Settings, get_settings


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
        guide = _seed_guide(container)
    finally:
        container.close()
    console.print(
        f"Demo data ready in {settings.resolved_database_url}: "
        f"{summary['customers']} customers, {summary['events']} events, "
        f"{summary['turns']} past messages."
    )
    if guide is not None:
        console.print(
            f"Journey guide_to_sales: {len(guide.customers)} customers simulated over the past "
            f"three weeks ({len(guide.converted)} converted); see /console/journeys.")


def _seed_guide(container: Any) -> Any:
    """The buyer's-guide journey's history, simulated hour by hour (once)."""
    from rich.progress import Progress

    from journey.demo.guide import seed_guide

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("Simulating the buyer's-guide journey (3 weeks)", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return seed_guide(container, progress=progress)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: JOURNEY_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: JOURNEY_PORT).")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, max=64,
        help="API processes sharing the port (uvicorn workers). Above 1: PostgreSQL "
        "(JOURNEY_DATABASE_URL) and a Chroma server (JOURNEY_CHROMA_URL) are required; each "
        "process also runs JOURNEY_WORKERS worker threads.")] = 1,
) -> None:
    """Run the API server in the foreground (Ctrl+C stops it)."""
    import uvicorn

    from api.app import create_app

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    base = f"http://{host}:{port}"
    if workers > 1:
        problem = processes_problem(settings)
        if problem:
            err.print(f"[red]journey serve --workers {workers}: {problem}[/red]")
            raise typer.Exit(2)
    from agent.knowledge import KnowledgeInvalid, load_knowledge

    try:  # before the server starts: a broken knowledge file is named, line by line
        load_knowledge(settings.knowledge_path)
    except KnowledgeInvalid as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
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
    if workers > 1:
        console.print(f"  Processes: {workers} API processes on one port, sharing "
                      f"{settings.resolved_database_url.split('@')[-1]} and {settings.chroma_url}")
    console.print(f"  Workers:   {settings.workers} (queued turns, journeys, the outbox relay)"
                  + (f" in each of the {workers} processes" if workers > 1 else "")
                  + ("; run `journey worker` for more" if settings.workers else
                     "; run `journey worker` to deliver anything"))
    if not (settings.smtp_host and settings.twilio_account_sid):
        console.print(f"  Channels:  unconfigured ones write to "
                      f"{settings.data_dir / 'outbox'}/<channel>.jsonl (see README, Channels)")
    if not settings.api_keys:
        console.print("  [yellow]No API keys configured: run `journey init` first.[/yellow]")
    # open web-chat streams must not hold Ctrl+C for minutes
    if workers > 1:
        # each process builds its own app from the environment (the settings above came from
        # it unchanged); migrations and the checkpointer's tables are set up under a database
        # lock, so the processes may start together
        uvicorn.run("api.app:create_app", factory=True, workers=workers, host=host, port=port,
                    log_level="info", timeout_graceful_shutdown=5)
        return
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=5)


def processes_problem(settings: Settings) -> str | None:
    """Why ``settings`` cannot be shared by several API processes (None: they can).

    The embedded SQLite file and Chroma directory belong to one process (Chroma's embedded
    client keeps its index in the process), and the embedded local model would start once per
    process on one port."""
    missing = []
    if not settings.is_postgres:
        missing.append("PostgreSQL (JOURNEY_DATABASE_URL=postgresql+psycopg://…), not the "
                       "embedded SQLite file")
    if not settings.chroma_url:
        missing.append("a Chroma server (`chroma run`, JOURNEY_CHROMA_URL=http://host:8000), "
                       "not the embedded Chroma directory")
    if missing:
        return "several processes share the stores, so they need " + " and ".join(missing) + "."
    if settings.resolved_brain == "local":
        return ("the embedded local model would start once per process. Run it once with "
                "`journey llm serve` and point the processes at it: JOURNEY_BRAIN=openai, "
                f"JOURNEY_LLM_BASE_URL=http://127.0.0.1:{settings.local_port}/v1, "
                "JOURNEY_LLM_MODE=json_object_schema (or set JOURNEY_BRAIN=rules).")
    return None


@app.command()
def worker(
    threads: Annotated[int, typer.Option(
        min=1, max=16,
        help=f"Worker threads (at most {PG_TURNS_AT_ONCE} on PostgreSQL).")] = 1,
) -> None:
    """Run workers without the API: queued turns, journey wake-ups, the outbox relay.

    Any number of worker processes can share one PostgreSQL database (rows are claimed with
    FOR UPDATE SKIP LOCKED); with SQLite, one process is enough. Ctrl+C stops them."""
    import signal
    import threading

    from journey.runtime import build_container

    settings = get_settings()
    if settings.is_postgres and threads > PG_TURNS_AT_ONCE:
        # each thread runs a turn, and a turn holds two of the pool's connections
        err.print(f"[red]journey worker --threads {threads}: at most {PG_TURNS_AT_ONCE} on "
                  "PostgreSQL (each running turn holds two of the pool's connections; more "
                  "deadlock it). Run more `journey worker` processes instead.[/red]")
        raise typer.Exit(2)
    if settings.resolved_brain == "local":
        # workers run queued turns; the local model is started by `journey serve`
        settings = settings.model_copy(update={"brain": "rules"})
    with console.status("Loading the embedding model and the stores…"):
        container = build_container(settings)
    if settings.is_postgres and not settings.chroma_url:
        err.print("[yellow]The vector memory is this process's own embedded Chroma directory: "
                  "processes sharing PostgreSQL should share a Chroma server too "
                  "(JOURNEY_CHROMA_URL), or each remembers only the turns it ran.[/yellow]")
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
