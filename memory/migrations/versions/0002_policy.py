"""Policy engine: decision inputs and reason index, deferred messages, approvals.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column("decisions", sa.Column("inputs", Json))
    op.add_column("decisions", sa.Column("policy_version", sa.String(40)))
    op.add_column("decisions", sa.Column("rejected", Json))
    op.create_table(
        "decision_reasons",
        sa.Column(
            "decision_id", sa.String(40), sa.ForeignKey("decisions.id"), primary_key=True
        ),
        sa.Column("code", sa.String(160), primary_key=True),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
    )
    op.create_index("ix_decision_reasons_code", "decision_reasons", ["code", "customer_id"])
    op.add_column("outbox", ts("not_before", nullable=True))
    op.add_column("outbox", sa.Column("is_reply", sa.Boolean))
    op.create_index("ix_outbox_customer_created", "outbox", ["customer_id", "created_at"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("decision_id", sa.String(40), sa.ForeignKey("decisions.id"), nullable=False),
        sa.Column(
            "conversation_id", sa.String(40), sa.ForeignKey("conversations.id"), nullable=False
        ),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("inbound_message_id", sa.String(40), nullable=False),
        sa.Column("action", Json, nullable=False),
        sa.Column("reason_codes", Json, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("result", Json, nullable=False),
        sa.Column("decided_by", sa.String(200)),
        sa.Column("note", sa.Text),
        ts("deliver_at", nullable=True),
        sa.Column("is_reply", sa.Boolean),
        ts("created_at"),
        ts("decided_at", nullable=True),
    )
    op.create_index("ix_approvals_status_created", "approvals", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_approvals_status_created", table_name="approvals")
    op.drop_table("approvals")
    op.drop_index("ix_outbox_customer_created", table_name="outbox")
    op.drop_column("outbox", "is_reply")
    op.drop_column("outbox", "not_before")
    op.drop_index("ix_decision_reasons_code", table_name="decision_reasons")
    op.drop_table("decision_reasons")
    op.drop_column("decisions", "rejected")
    op.drop_column("decisions", "policy_version")
    op.drop_column("decisions", "inputs")
