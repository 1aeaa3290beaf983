"""The handoff inbox: assignee, claim and close times, outcome; handoff events; a person's
reply in the outbox has no decision.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    for column in (
        sa.Column("assignee", sa.String(200)),
        ts("claimed_at", nullable=True),
        ts("closed_at", nullable=True),
        sa.Column("closed_by", sa.String(200)),
        sa.Column("outcome", sa.String(40)),
    ):
        op.add_column("handoffs", column)
    op.create_index("ix_handoffs_status_queue", "handoffs", ["status", "queue", "created_at"])
    op.create_table(
        "handoff_events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("handoff_id", sa.String(40), sa.ForeignKey("handoffs.id"), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("body", Json, nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        ts("created_at"),
        sa.UniqueConstraint("handoff_id", "idempotency_key", name="uq_handoff_events_key"),
    )
    op.create_index(
        "ix_handoff_events_handoff_created", "handoff_events", ["handoff_id", "created_at"]
    )
    # every existing handoff gets its "created" event, so the timeline starts where it began
    op.execute(
        "INSERT INTO handoff_events (id, handoff_id, kind, actor, body, created_at) "
        "SELECT 'hev_' || id, id, 'created', 'bot', '{}', created_at FROM handoffs"
    )
    # SQLite cannot drop NOT NULL in place: batch mode rebuilds the table (see memory.migrate)
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("decision_id", existing_type=sa.String(40), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE decision_id IS NULL")
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("decision_id", existing_type=sa.String(40), nullable=False)
    op.drop_index("ix_handoff_events_handoff_created", table_name="handoff_events")
    op.drop_table("handoff_events")
    op.drop_index("ix_handoffs_status_queue", table_name="handoffs")
    for name in ("outcome", "closed_by", "closed_at", "claimed_at", "assignee"):
        op.drop_column("handoffs", name)
