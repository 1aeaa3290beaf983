"""send_message (WRITE): queue a message to the current customer on a channel."""

from __future__ import annotations

from typing import Any

from core.domain import SendMessage
from core.effects import OutboundMessage
from tools.base import ToolContext, ToolError

#: Channels whose reply is delivered in the HTTP response of the inbound message.
INLINE_CHANNELS = {"web_chat"}


def send_message(args: SendMessage, ctx: ToolContext) -> dict[str, Any]:
    address = ctx.profile.address_for(args.channel)
    if address is None:
        raise ToolError(f"the customer has no address on {args.channel}")
    is_reply = ctx.is_reply and args.channel == ctx.inbound_channel
    inline = args.channel in INLINE_CHANNELS and is_reply and ctx.deliver_at is None
    status = "sent" if inline else "scheduled" if ctx.deliver_at else "pending"
    out = OutboundMessage(
        message_id=ctx.ids("msg"),
        outbox_id=ctx.ids("out"),
        channel=args.channel,
        address=address,
        text=args.text,
        purpose=args.purpose,
        status=status,
        not_before=ctx.deliver_at,
        is_reply=is_reply,
        meta=dict(ctx.meta),
    )
    ctx.effects.outbound.append(out)
    result = {"message_id": out.message_id, "outbox_id": out.outbox_id, "status": out.status}
    if ctx.deliver_at:
        result["not_before"] = ctx.deliver_at.isoformat()
    return result
