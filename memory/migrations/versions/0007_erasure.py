"""Erasure: the audit record of each erasure, the keyed hashes of the identities it removed,
and the generated hashing key.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def ts(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("customer_id", sa.String(40), nullable=False, unique=True),
        sa.Column("merged_ids", Json, nullable=False),
        ts("erased_at"),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("counts", Json, nullable=False),
        sa.Column("consent", Json, nullable=False),
        sa.Column("recreated", Json),
    )
    op.create_table(
        "erased_identities",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("erasure_id", sa.String(40), sa.ForeignKey("erasures.id"), nullable=False),
        ts("erased_at"),
    )
    op.create_index("ix_erased_identities_erasure_id", "erased_identities", ["erasure_id"])
    op.create_table(
        "erasure_salt",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("salt", sa.Text, nullable=False),
        ts("created_at"),
    )


def downgrade() -> None:
    op.drop_table("erasure_salt")
    op.drop_index("ix_erased_identities_erasure_id", table_name="erased_identities")
    op.drop_table("erased_identities")
    op.drop_table("erasures")
