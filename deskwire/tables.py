"""Tables shared by the web process and the worker: events, their outcomes, request state."""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from deskwire.database import Base


def utcnow() -> datetime:
    """Timezone-aware now, the one clock of every table."""
    return datetime.now(UTC)


# What a request id may look like (SDP sends digits): it goes into API paths and a
# String(100) column, so it is checked at ingest and again before each SDP call. ``\Z``,
# not ``$``: ``$`` also matches before a trailing newline.
REQUEST_ID = re.compile(r"^[0-9A-Za-z_-]{1,100}\Z")


class EventStatus(enum.StrEnum):
    """Where an event is: queued → running → done | failed | duplicate.

    ``failed`` is the dead-letter list; ``duplicate`` is an event without a sender's id that
    the worker found to describe the same request state as an earlier one (see ``identity``).
    """

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DUPLICATE = "duplicate"


class Event(Base):
    """A webhook accepted from SDP, stored before the 202 so that it is never lost."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_status_received", "status", "received_at"),
        Index("ix_events_request", "source", "request_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(200), index=True)
    source: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default=EventStatus.QUEUED)
    # Whether the sender gave the event id (deduplicated at ingest); otherwise deskwire made
    # one up and the worker decides by request state whether the event repeats another.
    explicit_id: Mapped[bool] = mapped_column(default=True, server_default=true())
    # Made by reconciliation from SDP's list of changed requests: no webhook was seen.
    reconciled: Mapped[bool] = mapped_column(default=False, server_default=false())
    # That decision in words, for the run history (e.g. "duplicate of event 12: …").
    identity: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    ruleset_version: Mapped[str | None] = mapped_column(String(64))
    # Decided once, on the first run that gets that far (None: not decided yet).
    caused_by_deskwire: Mapped[bool | None] = mapped_column(default=None)
    # The request and the previous state the rules saw on the first run: retries and
    # replays evaluate against the same inputs, not against a re-read (changed) request.
    request_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    previous_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The task delivery that holds the event while it runs, and until when: the worker
    # renews the lease while it runs the event; once it lapses (the worker died), the
    # sweeper puts the event back in the queue and any delivery may claim it.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A queued event is due from this time (a retry's backoff, a wait for an earlier
    # event); the wait lives here, not only in a Celery countdown that dies with a worker.
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DedupeKey(Base):
    """One row per (source, event id) seen inside the dedupe window."""

    __tablename__ = "dedupe_keys"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class StateClaim(Base):
    """One delivery without a sender's id that claimed a state of a request.

    The unique constraint makes the duplicate decision atomic across workers: of the events
    with the same source, event type, request, ``last_updated_time`` (epoch ms) and body,
    exactly one inserts its row; the others find it and are duplicates of that event.
    """

    __tablename__ = "state_claims"
    __table_args__ = (
        UniqueConstraint(
            "source", "event_type", "request_id", "last_updated_time", "body_digest",
            name="uq_state_claims_state",
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str] = mapped_column(String(100))
    last_updated_time: Mapped[str] = mapped_column(String(20))
    body_digest: Mapped[str] = mapped_column(String(64))
    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class RequestChange(Base):
    """The first event that stood for one change of a request (request id + state).

    A webhook and a reconciled event of the same change must not both run: whichever is
    processed first inserts this row (the unique constraint decides between racing
    workers); see :mod:`deskwire.change_claims`.
    """

    __tablename__ = "request_changes"
    __table_args__ = (
        UniqueConstraint(
            "source", "request_id", "last_updated_time", name="uq_request_changes_change"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(100))
    request_id: Mapped[str] = mapped_column(String(100))
    last_updated_time: Mapped[str] = mapped_column(String(20))
    event_type: Mapped[str] = mapped_column(String(200))
    reconciled: Mapped[bool]
    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ReconcileProgress(Base):
    """Where reconciliation of one source stands, so that a restart resumes there."""

    __tablename__ = "reconcile_progress"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    connection: Mapped[str] = mapped_column(String(100))
    # Changes up to this last_updated_time (epoch ms) have been read.
    watermark_ms: Mapped[int] = mapped_column(BigInteger)
    last_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The last run: SDP calls, requests read, events made, whether it read everything.
    last_calls: Mapped[int] = mapped_column(Integer, default=0)
    last_read: Mapped[int] = mapped_column(Integer, default=0)
    last_created: Mapped[int] = mapped_column(Integer, default=0)
    last_complete: Mapped[bool] = mapped_column(default=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    total_created: Mapped[int] = mapped_column(Integer, default=0)


class RuleRun(Base):
    """The outcome of one rule for one event: matched or why not, and how it ended."""

    __tablename__ = "rule_runs"
    __table_args__ = (UniqueConstraint("event_pk", "rule_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[str] = mapped_column(String(100))
    matched: Mapped[bool]
    outcome: Mapped[str] = mapped_column(String(20))  # not_matched | done | failed | stopped
    detail: Mapped[str | None] = mapped_column(Text)
    # A shadow rule (`mode: shadow`): its steps' requests were recorded, nothing was called.
    shadow: Mapped[bool] = mapped_column(default=False, server_default=false())
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StepRun(Base):
    """One step of a matched rule; a succeeded row makes the step effectively-once."""

    __tablename__ = "step_runs"
    __table_args__ = (UniqueConstraint("event_pk", "rule_id", "step_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[str] = mapped_column(String(100))
    step_id: Mapped[str] = mapped_column(String(100))
    uses: Mapped[str] = mapped_column(String(100))
    # succeeded | failed | skipped | retrying | shadow (its request recorded, not sent)
    status: Mapped[str] = mapped_column(String(20))
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    # The last try's wall time and the HTTP status it got (None: no HTTP call answered).
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    http_status: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RequestState(Base):
    """The last state deskwire saw of an SDP request, for ``changed`` conditions."""

    __tablename__ = "request_states"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WaitState(enum.StrEnum):
    """Where a rule's `wait` step is: waiting → fired | cancelled | skipped.

    ``fired``: the wait ended and its event was queued again to run the rest of the rule;
    ``skipped``: it ended but its `until` no longer held, so the rest of the rule did not run.
    """

    WAITING = "waiting"
    FIRED = "fired"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class Wait(Base):
    """A `wait` step of a rule run: the rest of the rule runs once ``due_at`` has passed.

    The row, not a broker countdown, is the truth: it survives restarts of the worker and
    of Redis, and moving it out of ``waiting`` is one guarded UPDATE, so it fires once.
    """

    __tablename__ = "waits"
    __table_args__ = (
        UniqueConstraint("event_pk", "rule_id", "step_id"),
        Index("ix_waits_state_due", "state", "due_at"),
        Index("ix_waits_request", "source", "request_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[str] = mapped_column(String(100))
    step_id: Mapped[str] = mapped_column(String(100))
    step_index: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(100))
    request_id: Mapped[str | None] = mapped_column(String(100))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(20), default=WaitState.WAITING)
    # Who cancelled it, in words ("event 12 (request.updated)", "deskwire waits cancel"),
    # or why it was skipped (its `until` no longer held).
    cancelled_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
