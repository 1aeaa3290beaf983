"""Signals and channels: profile merges, jobs (queued turns, journey wake-ups, scheduled
actions), the outbox relay's columns, email threading details, proactive decisions.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column("customers", sa.Column("merged_into", sa.String(40)))
    op.create_table(
        "profile_merges",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("survivor_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("merged_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("identities", Json, nullable=False),
        sa.Column("moved", Json, nullable=False),
        ts("created_at"),
    )
    op.create_index("ix_profile_merges_survivor_id", "profile_merges", ["survivor_id"])
    op.create_index("ix_profile_merges_merged_id", "profile_merges", ["merged_id"])
    op.add_column("messages", sa.Column("meta", Json))
    # SQLite cannot drop NOT NULL in place: batch mode rebuilds the table (memory.migrate
    # turns foreign-key enforcement off around it, as SQLite's documentation prescribes)
    with op.batch_alter_table("decisions") as batch:
        batch.alter_column("inbound_message_id", existing_type=sa.String(40), nullable=True)
        batch.add_column(sa.Column("job_id", sa.String(40)))
        batch.add_column(sa.Column("trigger", Json))
        batch.create_unique_constraint("uq_decisions_job_id", ["job_id"])
    for column in (
        ts("next_attempt_at", nullable=True),
        ts("locked_until", nullable=True),
        sa.Column("last_error", sa.Text),
        sa.Column("provider_message_id", sa.String(200)),
        sa.Column("provider_status", sa.String(40)),
        sa.Column("meta", Json),
    ):
        op.add_column("outbox", column)
    op.execute("UPDATE outbox SET next_attempt_at = COALESCE(not_before, created_at)")
    op.create_index("ix_outbox_status_next", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_provider_message", "outbox", ["provider_message_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id")),
        sa.Column("dedupe_key", sa.String(240), nullable=False, unique=True),
        sa.Column("payload", Json, nullable=False),
        ts("due_at"),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        ts("locked_until", nullable=True),
        sa.Column("worker", sa.String(80)),
        sa.Column("journey", sa.String(80)),
        sa.Column("tag", sa.String(80)),
        sa.Column("result", Json),
        sa.Column("error", sa.Text),
        ts("created_at"),
        ts("updated_at"),
    )
    op.create_index("ix_jobs_status_due", "jobs", ["status", "due_at"])
    op.create_index("ix_jobs_customer_status", "jobs", ["customer_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_customer_status", table_name="jobs")
    op.drop_index("ix_jobs_status_due", table_name="jobs")
    op.drop_table("jobs")
    op.drop_index("ix_outbox_provider_message", table_name="outbox")
    op.drop_index("ix_outbox_status_next", table_name="outbox")
    for name in ("meta", "provider_status", "provider_message_id", "last_error",
                 "locked_until", "next_attempt_at"):
        op.drop_column("outbox", name)
    op.execute("DELETE FROM decision_reasons WHERE decision_id IN "
               "(SELECT id FROM decisions WHERE inbound_message_id IS NULL)")
    op.execute("DELETE FROM decisions WHERE inbound_message_id IS NULL")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_constraint("uq_decisions_job_id", type_="unique")
        batch.drop_column("trigger")
        batch.drop_column("job_id")
        batch.alter_column("inbound_message_id", existing_type=sa.String(40), nullable=False)
    op.drop_column("messages", "meta")
    op.drop_index("ix_profile_merges_merged_id", table_name="profile_merges")
    op.drop_index("ix_profile_merges_survivor_id", table_name="profile_merges")
    op.drop_table("profile_merges")
    op.drop_column("customers", "merged_into")
