"""Durable waits: one row per `wait` step of a rule run, until it fires or is cancelled.

Revision ID: 0005_waits
Revises: 0004_step_timing
Create Date: 2026-11-29 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_waits"
down_revision: str | Sequence[str] | None = "0004_step_timing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``waits`` (a plain CREATE TABLE: nothing existing is altered)."""
    if sa.inspect(op.get_bind()).has_table("waits"):
        return  # made by create_all and adopted as the baseline
    op.create_table(
        "waits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_pk", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=100), nullable=False),
        sa.Column("step_id", sa.String(length=100), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("cancelled_by", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["event_pk"], ["events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_pk", "rule_id", "step_id"),
    )
    op.create_index("ix_waits_event_pk", "waits", ["event_pk"], unique=False)
    op.create_index("ix_waits_state_due", "waits", ["state", "due_at"], unique=False)
    op.create_index("ix_waits_request", "waits", ["source", "request_id", "state"], unique=False)


def downgrade() -> None:
    """Drop ``waits`` and its indexes."""
    op.drop_index("ix_waits_request", table_name="waits")
    op.drop_index("ix_waits_state_due", table_name="waits")
    op.drop_index("ix_waits_event_pk", table_name="waits")
    op.drop_table("waits")
