"""GET /v1/conversations/{id}: the transcript, each inbound message with its decision."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path

from api.deps import StoreDep, require
from api.schemas import ConversationView, TranscriptEntry

router = APIRouter(prefix="/v1", tags=["conversations"])


@router.get("/conversations/{conversation_id}", response_model=ConversationView)
def get_conversation(
    conversation_id: Annotated[str, Path(max_length=40)],
    store: StoreDep,
    _key: Annotated[str, Depends(require("conversations:read"))],
) -> ConversationView:
    conversation = store.get_conversation(conversation_id)
    if conversation is None:
        raise HTTPException(404, f"no conversation {conversation_id!r}")
    decisions = {d.inbound_message_id: d for d in store.decisions(conversation_id=conversation_id)}
    return ConversationView(
        conversation=conversation,
        active_handoff=store.active_handoff(conversation_id),
        transcript=[
            TranscriptEntry(message=m, decision=decisions.get(m.id))
            for m in store.messages(conversation_id=conversation_id)
        ],
        approvals=[
            a for a in store.approvals(customer_id=conversation.customer_id, limit=500)
            if a.conversation_id == conversation_id
        ],
    )
