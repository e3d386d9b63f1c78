"""Reconciliation: reconciled events, claims of request changes, progress per source.

Revision ID: 0006_reconciliation
Revises: 0005_waits
Create Date: 2026-11-29 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_reconciliation"
down_revision: str | Sequence[str] | None = "0005_waits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``events.reconciled`` and the ``request_changes`` and ``reconcile_progress`` tables."""
    # Plain ADD COLUMN: ``events`` is never batch-altered (see docs/development.md). What a
    # create_all made already (adopted as the baseline) is left as it is.
    inspector = sa.inspect(op.get_bind())
    columns = {column["name"] for column in inspector.get_columns("events")}
    if "reconciled" not in columns:
        op.add_column(
            "events",
            sa.Column("reconciled", sa.Boolean(), server_default=sa.false(), nullable=False),
        )
    if not inspector.has_table("request_changes"):
        op.create_table(
            "request_changes",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("source", sa.String(length=100), nullable=False),
            sa.Column("request_id", sa.String(length=100), nullable=False),
            sa.Column("last_updated_time", sa.String(length=20), nullable=False),
            sa.Column("event_type", sa.String(length=200), nullable=False),
            sa.Column("reconciled", sa.Boolean(), nullable=False),
            sa.Column("event_pk", sa.Integer(), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["event_pk"], ["events.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint(
                "source", "request_id", "last_updated_time", name="uq_request_changes_change"
            ),
        )
        op.create_index("ix_request_changes_event_pk", "request_changes", ["event_pk"])
        op.create_index("ix_request_changes_expires_at", "request_changes", ["expires_at"])
    if not inspector.has_table("reconcile_progress"):
        op.create_table(
            "reconcile_progress",
            sa.Column("source", sa.String(length=100), nullable=False),
            sa.Column("connection", sa.String(length=100), nullable=False),
            sa.Column("watermark_ms", sa.BigInteger(), nullable=False),
            sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_calls", sa.Integer(), nullable=False),
            sa.Column("last_read", sa.Integer(), nullable=False),
            sa.Column("last_created", sa.Integer(), nullable=False),
            sa.Column("last_complete", sa.Boolean(), nullable=False),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.Column("total_created", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("source"),
        )


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_table("reconcile_progress")
    op.drop_index("ix_request_changes_expires_at", table_name="request_changes")
    op.drop_index("ix_request_changes_event_pk", table_name="request_changes")
    op.drop_table("request_changes")
    # ALTER TABLE … DROP COLUMN (SQLite 3.35+): events is not batch-altered.
    op.execute("ALTER TABLE events DROP COLUMN reconciled")
