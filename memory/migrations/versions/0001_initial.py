"""Initial schema: customers, identities, conversations, messages, events, decisions,
outbox, handoffs, CRM activities.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("lifecycle_stage", sa.String(60), nullable=False),
        sa.Column("timezone", sa.String(60), nullable=False),
        sa.Column("attributes", Json, nullable=False),
        sa.Column("consent", Json, nullable=False),
        ts("created_at"),
        ts("updated_at"),
    )
    op.create_table(
        "identities",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("value", sa.String(320), nullable=False),
        sa.UniqueConstraint("kind", "value", name="uq_identities_kind_value"),
    )
    op.create_index("ix_identities_customer_id", "identities", ["customer_id"])
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("owner", sa.String(20), nullable=False),
        ts("created_at"),
        ts("updated_at"),
    )
    op.create_index("ix_conversations_customer_id", "conversations", ["customer_id"])
    op.create_table(
        "messages",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "conversation_id", sa.String(40), sa.ForeignKey("conversations.id"), nullable=False
        ),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("external_id", sa.String(200)),
        sa.Column("author", sa.String(60), nullable=False),
        sa.Column("turn_status", sa.String(20)),
        ts("turn_started_at", nullable=True),
        ts("created_at"),
        sa.UniqueConstraint("channel", "external_id", name="uq_messages_channel_external_id"),
    )
    op.create_index(
        "ix_messages_conversation_created", "messages", ["conversation_id", "created_at"]
    )
    op.create_index("ix_messages_customer_created", "messages", ["customer_id", "created_at"])
    op.create_table(
        "events",
        sa.Column("id", sa.String(60), primary_key=True),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("type", sa.String(80), nullable=False),
        sa.Column("properties", Json, nullable=False),
        ts("occurred_at"),
    )
    op.create_index("ix_events_customer_occurred", "events", ["customer_id", "occurred_at"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "conversation_id", sa.String(40), sa.ForeignKey("conversations.id"), nullable=False
        ),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column(
            "inbound_message_id",
            sa.String(40),
            sa.ForeignKey("messages.id"),
            nullable=False,
            unique=True,
        ),
        sa.Column("intent", sa.String(40), nullable=False),
        sa.Column("intent_confidence", sa.Float, nullable=False),
        sa.Column("stage", sa.String(60), nullable=False),
        sa.Column("previous_stage", sa.String(60), nullable=False),
        sa.Column("sentiment", sa.String(20), nullable=False),
        sa.Column("proposed", Json, nullable=False),
        sa.Column("verdicts", Json, nullable=False),
        sa.Column("reasons", Json, nullable=False),
        sa.Column("reply", sa.Text),
        sa.Column("brain", Json, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        ts("created_at"),
    )
    op.create_index("ix_decisions_customer_id", "decisions", ["customer_id"])
    op.create_index(
        "ix_decisions_conversation_created", "decisions", ["conversation_id", "created_at"]
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("decision_id", sa.String(40), sa.ForeignKey("decisions.id"), nullable=False),
        sa.Column("message_id", sa.String(40), sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("idempotency_key", sa.String(120), nullable=False, unique=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        ts("created_at"),
        ts("sent_at", nullable=True),
    )
    op.create_index("ix_outbox_status_created", "outbox", ["status", "created_at"])
    op.create_table(
        "handoffs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "conversation_id", sa.String(40), sa.ForeignKey("conversations.id"), nullable=False
        ),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("decision_id", sa.String(40), sa.ForeignKey("decisions.id")),
        sa.Column("queue", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("priority", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        ts("created_at"),
        ts("updated_at"),
    )
    op.create_index("ix_handoffs_conversation_status", "handoffs", ["conversation_id", "status"])
    op.create_table(
        "crm_activities",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("decision_id", sa.String(40), sa.ForeignKey("decisions.id")),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("body", Json, nullable=False),
        sa.Column("done", sa.Boolean, nullable=False),
        ts("created_at"),
    )
    op.create_index("ix_crm_activities_customer_id", "crm_activities", ["customer_id"])


def downgrade() -> None:
    for table in (
        "crm_activities",
        "handoffs",
        "outbox",
        "decisions",
        "events",
        "messages",
        "conversations",
        "identities",
        "customers",
    ):
        op.drop_table(table)
