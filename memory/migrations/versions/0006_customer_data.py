"""Customer data: a profile's locale and channel preference, and the consent ledger.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def ts(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("locale", sa.String(35), nullable=False, server_default=""))
        batch.add_column(sa.Column("channel_preference", sa.String(20)))
    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("previous", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("source", sa.String(80), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("evidence", sa.Text),
        ts("at"),
        ts("created_at"),
    )
    op.create_index("ix_consent_events_customer_id", "consent_events", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_consent_events_customer_id", table_name="consent_events")
    op.drop_table("consent_events")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("channel_preference")
        batch.drop_column("locale")
