"""send_message (WRITE): queue a message to the current customer on a channel."""

from __future__ import annotations

from typing import Any

from journey.domain import SendMessage
from journey.store import OutboundMessage
from tools.base import ToolContext, ToolError

#: Channels whose reply is delivered in the HTTP response of the inbound message.
INLINE_CHANNELS = {"web_chat"}


def send_message(args: SendMessage, ctx: ToolContext) -> dict[str, Any]:
    address = ctx.profile.address_for(args.channel)
    if address is None:
        raise ToolError(f"the customer has no address on {args.channel}")
    inline = args.channel in INLINE_CHANNELS and args.channel == ctx.inbound_channel
    out = OutboundMessage(
        message_id=ctx.ids("msg"),
        outbox_id=ctx.ids("out"),
        channel=args.channel,
        address=address,
        text=args.text,
        purpose=args.purpose,
        status="sent" if inline else "pending",
    )
    ctx.effects.outbound.append(out)
    return {"message_id": out.message_id, "outbox_id": out.outbox_id, "status": out.status}
