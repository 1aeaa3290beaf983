"""Journeys with steps: pinned journey versions, enrolments and what each step did; an index
on a customer's handoffs (each step of an enrolment asks whether a person owns it).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "journey_versions",
        sa.Column("journey", sa.String(80), primary_key=True),
        sa.Column("version", sa.String(16), primary_key=True),
        sa.Column("definition", Json, nullable=False),
        ts("created_at"),
    )
    op.create_table(
        "enrolments",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("journey", sa.String(80), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("arm", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("step", sa.String(40)),
        sa.Column("seq", sa.Integer, nullable=False),
        ts("wait_until", nullable=True),
        sa.Column("variants", Json, nullable=False),
        sa.Column("trigger_event_id", sa.String(80)),
        ts("entered_at"),
        ts("exited_at", nullable=True),
        sa.Column("exit_reason", sa.String(120)),
        ts("goal_until", nullable=True),
        ts("converted_at", nullable=True),
        sa.Column("goal_event_id", sa.String(80)),
        ts("updated_at"),
    )
    op.create_index("ix_enrolments_journey_status", "enrolments", ["journey", "status"])
    op.create_index("ix_enrolments_customer_status", "enrolments", ["customer_id", "status"])
    op.create_table(
        "enrolment_steps",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("enrolment_id", sa.String(40), sa.ForeignKey("enrolments.id"), nullable=False),
        sa.Column("customer_id", sa.String(40), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("journey", sa.String(80), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("step", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("detail", sa.String(120)),
        sa.Column("reason_codes", Json, nullable=False),
        sa.Column("decision_id", sa.String(40)),
        ts("at"),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_enrolment_steps_journey_step", "enrolment_steps", ["journey", "step"])
    op.create_index("ix_enrolment_steps_enrolment", "enrolment_steps", ["enrolment_id"])
    op.create_index("ix_handoffs_customer_status", "handoffs", ["customer_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_handoffs_customer_status", table_name="handoffs")
    op.drop_index("ix_enrolment_steps_enrolment", table_name="enrolment_steps")
    op.drop_index("ix_enrolment_steps_journey_step", table_name="enrolment_steps")
    op.drop_table("enrolment_steps")
    op.drop_index("ix_enrolments_customer_status", table_name="enrolments")
    op.drop_index("ix_enrolments_journey_status", table_name="enrolments")
    op.drop_table("enrolments")
    op.drop_table("journey_versions")
