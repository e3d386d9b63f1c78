"""Event identity: events.explicit_id and events.identity, the state_claims table.

Revision ID: 0002_event_identity
Revises: 0001_baseline
Create Date: 2026-11-29 11:06:19

Events stored before this revision all had their id checked at ingest, so they get
``explicit_id = true``. A database that deskwire's create_all made between the event
identity change and the migrations already has these; they are then left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_event_identity"
down_revision: str | Sequence[str] | None = "0001_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the columns and the table of the duplicate decision by request state."""
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("state_claims"):
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
    columns = {column["name"] for column in inspector.get_columns("events")}
    with op.batch_alter_table("events") as batch_op:
        if "explicit_id" not in columns:
            batch_op.add_column(
                sa.Column("explicit_id", sa.Boolean(), nullable=False, server_default=sa.true())
            )
        if "identity" not in columns:
            batch_op.add_column(sa.Column("identity", sa.Text(), nullable=True))


def downgrade() -> None:
    """Undo :func:`upgrade`."""
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_column("identity")
        batch_op.drop_column("explicit_id")
    op.drop_index("ix_state_claims_expires_at", table_name="state_claims")
    op.drop_index("ix_state_claims_event_pk", table_name="state_claims")
    op.drop_table("state_claims")
