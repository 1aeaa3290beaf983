"""Webhook receipts: the signed webhooks already accepted, so a replayed signature is refused.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def ts(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "webhook_receipts",
        sa.Column("source", sa.String(20), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        ts("first_seen_at"),
        ts("expires_at"),
    )
    op.create_index(
        "ix_webhook_receipts_source_expires", "webhook_receipts", ["source", "expires_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_receipts_source_expires", table_name="webhook_receipts")
    op.drop_table("webhook_receipts")
