"""Talk to the agent as a customer: `journey chat`, through a server or in-process."""

from __future__ import annotations

import json
import secrets
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.app import app, console, err
from cli.server import _prepare_local_model
from core.settings import Settings, get_settings


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


def _local_sender(settings: Settings, brain: str) -> Any:
    from pydantic import ValidationError

    from journey.runtime import build_container
    from journey.turns import InboundRequest

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
