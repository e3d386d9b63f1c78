"""Event identity by request state: the sender's-id flag, the decision, state claims.

Revision ID: 0002_request_state_identity
Revises: 0001_baseline
Create Date: 2026-11-29 11:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_request_state_identity"
down_revision: str | Sequence[str] | None = "0001_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``events.explicit_id`` / ``events.identity`` and the ``state_claims`` table."""
    # Plain ADD COLUMN, not batch mode: on SQLite batch mode copies and drops ``events``,
    # and the drop cascades to the run history (rule_runs, step_runs) of every event.
    # Events stored before this revision all carried an id (a sender's or a digest).
    # A database that create_all made between this change and the migrations has all of
    # it already (adopted as the baseline): what exists is left as it is.
    inspector = sa.inspect(op.get_bind())
    columns = {column["name"] for column in inspector.get_columns("events")}
    if "explicit_id" not in columns:
        op.add_column(
            "events",
            sa.Column("explicit_id", sa.Boolean(), server_default=sa.true(), nullable=False),
        )
    if "identity" not in columns:
        op.add_column("events", sa.Column("identity", sa.Text(), nullable=True))
    if inspector.has_table("state_claims"):
        return
    op.create_table(
        "state_claims",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=False),
        sa.Column("last_updated_time", sa.String(length=20), nullable=False),
        sa.Column("body_digest", sa.String(length=64), nullable=False),
        sa.Column("event_pk", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_pk"], ["events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "source",
            "event_type",
            "request_id",
            "last_updated_time",
            "body_digest",
            name="uq_state_claims_state",
        ),
    )
    op.create_index("ix_state_claims_event_pk", "state_claims", ["event_pk"])
    op.create_index("ix_state_claims_expires_at", "state_claims", ["expires_at"])


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_index("ix_state_claims_expires_at", table_name="state_claims")
    op.drop_index("ix_state_claims_event_pk", table_name="state_claims")
    op.drop_table("state_claims")
    # ALTER TABLE … DROP COLUMN (SQLite 3.35+), for the same reason as in upgrade().
    op.execute("ALTER TABLE events DROP COLUMN identity")
    op.execute("ALTER TABLE events DROP COLUMN explicit_id")
