"""The demo dataset: a few customers at different lifecycle stages, with signals and history."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.progress import track

from core.domain import Event
from journey.runtime import Container
from journey.turns import CustomerRef, InboundRequest
from prompts import read_yaml

DEMO_FILE = Path(__file__).with_name("demo.yaml")


def seed(container: Container, path: Path = DEMO_FILE, progress: bool = False) -> dict[str, int]:
    """Load the demo data. Idempotent: customers by identity, events and messages by id."""
    data: dict[str, Any] = read_yaml(path)  # a repeated key is refused before anything is seeded
    store = container.store
    now = store.clock.now()
    counts = {"customers": 0, "events": 0, "turns": 0}
    customers = data["customers"]
    for spec in track(customers, description="Seeding demo customers", disable=not progress):
        ref = CustomerRef(**spec["identities"], name=spec["name"])
        profile = next(
            (p for i in ref.identities() if (p := store.find_customer(i)) is not None), None
        )
        if profile is None:
            profile = store.create_customer(
                ref.identities(),
                spec["stage"],
                name=spec["name"],
                timezone=spec.get("timezone", "UTC"),
                attributes=spec.get("attributes", {}),
                consent=spec.get("consent", {}),
            )
        counts["customers"] += 1
        for ev in spec.get("events", []):
            store.add_event(
                Event(
                    id=ev["id"],
                    customer_id=profile.id,
                    type=ev["type"],
                    properties=ev.get("properties", {}),
                    occurred_at=now - timedelta(minutes=ev.get("minutes_ago", 0)),
                )
            )
            counts["events"] += 1
        for msg in spec.get("messages", []):
            container.orchestrator.handle_message(
                InboundRequest(
                    channel=msg["channel"], customer=ref, text=msg["text"], external_id=msg["id"]
                )
            )
            counts["turns"] += 1
    return counts
