"""Shadow mode: which rule runs were in shadow mode (their requests recorded, not sent).

Revision ID: 0007_shadow
Revises: 0006_reconciliation
Create Date: 2026-11-29 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_shadow"
down_revision: str | Sequence[str] | None = "0006_reconciliation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``rule_runs.shadow`` (false for every earlier run: shadow mode did not exist)."""
    # Plain ADD COLUMN: rule_runs is not batch-altered (see docs/development.md). A
    # database that create_all made with the column already keeps what it has.
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("rule_runs")}
    if "shadow" not in columns:
        op.add_column(
            "rule_runs",
            sa.Column("shadow", sa.Boolean(), nullable=False, server_default=sa.false()),
        )


def downgrade() -> None:
    """Drop what :func:`upgrade` added (ALTER TABLE … DROP COLUMN, SQLite 3.35+)."""
    op.execute("ALTER TABLE rule_runs DROP COLUMN shadow")
