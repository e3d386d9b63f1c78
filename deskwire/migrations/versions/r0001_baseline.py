"""Baseline: the schema deskwire created with create_all before it had migrations.

Revision ID: 0001_baseline
Revises: (none)
Create Date: 2026-11-29 10:33:59.007323
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_baseline"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the tables of deskwire 0.1 (events, run history, request state, tokens)."""
    op.create_table(
        "connection_auth_states",
        sa.Column("state_digest", sa.String(length=64), nullable=False),
        sa.Column("link_name", sa.String(length=50), nullable=False),
        sa.Column("user_key", sa.String(length=320), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("state_digest"),
    )
    op.create_index("ix_connection_auth_states_link_name", "connection_auth_states", ["link_name"])

    op.create_table(
        "connection_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("link_name", sa.String(length=50), nullable=False),
        sa.Column("user_key", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("service", sa.String(length=50), nullable=False),
        sa.Column("auth", sa.String(length=20), nullable=False),
        sa.Column("grant_type", sa.String(length=30), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("bootstrap_digest", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("link_name", "user_key"),
    )
    op.create_index("ix_connection_tokens_link_name", "connection_tokens", ["link_name"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("ruleset_version", sa.String(length=64), nullable=True),
        sa.Column("caused_by_deskwire", sa.Boolean(), nullable=True),
        sa.Column("request_snapshot", sa.JSON(), nullable=True),
        sa.Column("previous_snapshot", sa.JSON(), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_event_id", "events", ["event_id"])
    op.create_index("ix_events_request", "events", ["source", "request_id", "id"])
    op.create_index("ix_events_status_received", "events", ["status", "received_at"])

    op.create_table(
        "request_states",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "request_id"),
    )
    op.create_table(
        "dedupe_keys",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("event_pk", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_pk"], ["events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_dedupe_keys_expires_at", "dedupe_keys", ["expires_at"])

    op.create_table(
        "rule_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_pk", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=100), nullable=False),
        sa.Column("matched", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_pk"], ["events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_pk", "rule_id"),
    )
    op.create_index("ix_rule_runs_event_pk", "rule_runs", ["event_pk"])

    op.create_table(
        "step_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_pk", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=100), nullable=False),
        sa.Column("step_id", sa.String(length=100), nullable=False),
        sa.Column("uses", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_pk"], ["events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_pk", "rule_id", "step_id"),
    )
    op.create_index("ix_step_runs_event_pk", "step_runs", ["event_pk"])


def downgrade() -> None:
    """Drop every table."""
    op.drop_index("ix_step_runs_event_pk", table_name="step_runs")

    op.drop_table("step_runs")
    op.drop_index("ix_rule_runs_event_pk", table_name="rule_runs")

    op.drop_table("rule_runs")
    op.drop_index("ix_dedupe_keys_expires_at", table_name="dedupe_keys")

    op.drop_table("dedupe_keys")
    op.drop_table("request_states")
    op.drop_index("ix_events_status_received", table_name="events")
    op.drop_index("ix_events_request", table_name="events")
    op.drop_index("ix_events_event_id", table_name="events")

    op.drop_table("events")
    op.drop_index("ix_connection_tokens_link_name", table_name="connection_tokens")

    op.drop_table("connection_tokens")
    op.drop_index("ix_connection_auth_states_link_name", table_name="connection_auth_states")

    op.drop_table("connection_auth_states")
