"""Step timing for the runs pages: how long each step took and the HTTP status it got.

Revision ID: 0004_step_timing
Revises: 0003_event_leases
Create Date: 2026-11-29 11:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_step_timing"
down_revision: str | Sequence[str] | None = "0003_event_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``step_runs.duration_ms`` and ``step_runs.http_status`` (unknown for old rows)."""
    # Plain ADD COLUMN: step_runs is not batch-altered (see docs/development.md).
    # A database that create_all made with these columns already (adopted as the
    # baseline) keeps what it has.
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("step_runs")}
    for name in ("duration_ms", "http_status"):
        if name not in columns:
            op.add_column("step_runs", sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop what :func:`upgrade` added (ALTER TABLE … DROP COLUMN, SQLite 3.35+)."""
    op.execute("ALTER TABLE step_runs DROP COLUMN http_status")
    op.execute("ALTER TABLE step_runs DROP COLUMN duration_ms")
