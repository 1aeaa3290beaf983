"""The development transport: messages land in ``<data_dir>/outbox/<channel>.jsonl``, one JSON
object per line, instead of going to a provider. It is the default for any channel without a
configured provider, so ``make run`` on a fresh machine delivers somewhere you can read
(``tail -f data/outbox/email.jsonl``).

Idempotent by key: a key already in the file is not written again. The check and the append
happen under a lock held across threads (a mutex) and processes (``flock``), so a server and a
separate ``journey worker`` sharing the data dir do not write a message twice.
"""

from __future__ import annotations

import fcntl
import json
import threading
from pathlib import Path
from typing import Any

from channels.base import Delivery, SendResult
from channels.formatting import compose_email, sms_segments
from core.clock import Clock, SystemClock
from core.domain import Channel


class DevboxAdapter:
    name = "devbox"

    def __init__(self, directory: Path, channel: Channel, clock: Clock | None = None) -> None:
        self.path = Path(directory) / f"{channel}.jsonl"
        self.channel = channel
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()

    def _line(self, delivery: Delivery) -> dict[str, Any]:
        line: dict[str, Any] = {
            "idempotency_key": delivery.idempotency_key, "outbox_id": delivery.outbox_id,
            "message_id": delivery.message_id, "channel": delivery.channel,
            "to": delivery.address, "text": delivery.text, "purpose": delivery.purpose,
            "is_reply": delivery.is_reply, "customer_id": delivery.customer_id,
            "conversation_id": delivery.conversation_id,
            "written_at": self.clock.now().isoformat(),
        }
        if delivery.channel == "email":
            line["subject"], line["body"] = compose_email(delivery)
        elif delivery.channel in ("sms", "whatsapp"):
            line["segments"], line["encoding"] = sms_segments(delivery.text)
        return line

    def send(self, delivery: Delivery) -> SendResult:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            handle.seek(0)
            duplicate = any(
                json.loads(raw).get("idempotency_key") == delivery.idempotency_key
                for raw in handle if raw.strip()
            )
            if not duplicate:
                handle.write(json.dumps(self._line(delivery), ensure_ascii=False) + "\n")
        return SendResult(
            provider_message_id=f"devbox:{delivery.idempotency_key}",
            provider_status="written",
            meta={"file": str(self.path), "duplicate": duplicate},
        )

    def close(self) -> None:
        """Nothing to close: the file is opened per message."""
