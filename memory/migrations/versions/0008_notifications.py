"""Transactional notifications: one row per request, keyed by its idempotency key.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), unique=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("template", sa.String(80), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("decision_id", sa.String(40)),
        sa.Column("outbox_id", sa.String(40)),
        sa.Column("answer", Json),
        ts("locked_until", nullable=True),
        ts("created_at"),
        ts("updated_at"),
    )
    op.create_index("ix_notifications_customer_created", "notifications",
                    ["customer_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_notifications_customer_created", table_name="notifications")
    op.drop_table("notifications")
