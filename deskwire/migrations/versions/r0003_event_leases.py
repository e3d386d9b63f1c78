"""Recovery: a lease on running events and a due time on queued ones.

Revision ID: 0003_event_leases
Revises: 0002_request_state_identity
Create Date: 2026-11-29 11:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_event_leases"
down_revision: str | Sequence[str] | None = "0002_request_state_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``events.lease_until`` and ``events.not_before`` (both nullable)."""
    # Plain ADD COLUMN (see 0002: batch mode on SQLite would cascade away the run history).
    # Rows stored before this revision have neither: a running one without a lease counts
    # as lapsed, a queued one without a due time is due now.
    # A database that create_all made with these columns already (adopted as the
    # baseline) keeps what it has.
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("events")}
    for name in ("lease_until", "not_before"):
        if name not in columns:
            op.add_column("events", sa.Column(name, sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.execute("ALTER TABLE events DROP COLUMN not_before")
    op.execute("ALTER TABLE events DROP COLUMN lease_until")
