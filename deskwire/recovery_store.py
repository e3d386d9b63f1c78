"""Leases, due times and lost deliveries: what recovery asks of the event table.

The database, not the broker, knows whether an event still needs a run. A running event
holds a lease its worker renews; a queued event has a due time (``not_before``) and the
time its message was last sent (``dispatched_at``). From these the sweeper tells a live
delivery from a lost one without waiting for Redis's visibility timeout:

- *never sent*: queued, no message reached the broker (it was down at ingest);
- *overdue*: queued, due and sent more than a grace period ago, yet nobody claimed it
  (its message may be lost: Redis restarted without it, or a dead worker held it);
- *lapsed*: running, but its lease ran out (the worker running it died).

Re-sending is always safe: a claim is atomic, so a second message for the same event
finds it running or finished and does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from deskwire.database import transaction
from deskwire.tables import Event, EventStatus, utcnow

UNDISPATCHED_GRACE = 5.0  # seconds: ingest records its dispatch right after storing

Stranding = Literal["never_sent", "overdue", "lapsed"]


@dataclass(frozen=True)
class Windows:
    """The moments that separate a live delivery from a lost one, fixed at one ``now``."""

    now: datetime
    grace: float

    @property
    def overdue_before(self) -> datetime:
        """Sent or due before this and still queued: the message may be lost."""
        return self.now - timedelta(seconds=self.grace)

    @property
    def never_sent_before(self) -> datetime:
        """Received before this and never sent: the broker was down at ingest."""
        return self.now - timedelta(seconds=UNDISPATCHED_GRACE)

    def conditions(self) -> dict[Stranding, ColumnElement[bool]]:
        """One SQL condition per way an event can be stranded."""
        queued = Event.status == EventStatus.QUEUED
        due = or_(Event.not_before.is_(None), Event.not_before <= self.now)
        overdue = or_(Event.not_before.is_(None), Event.not_before < self.overdue_before)
        return {
            "never_sent": and_(
                queued,
                Event.dispatched_at.is_(None),
                Event.received_at < self.never_sent_before,
                due,
            ),
            "overdue": and_(queued, Event.dispatched_at < self.overdue_before, overdue),
            "lapsed": and_(
                Event.status == EventStatus.RUNNING,
                or_(Event.lease_until.is_(None), Event.lease_until < self.now),
            ),
        }


def windows(grace: float, now: datetime | None = None) -> Windows:
    """The windows of a sweep at ``now`` (default: the current time)."""
    return Windows(now or utcnow(), grace)


def renew_lease(sessions: sessionmaker[Session], pk: int, *, claimer: str, lease: float) -> bool:
    """Extend ``claimer``'s lease on a running event; ``False`` if it no longer holds it."""
    with transaction(sessions) as session:
        result = session.execute(
            update(Event)
            .where(
                Event.id == pk,
                Event.status == EventStatus.RUNNING,
                Event.claimed_by == claimer,
            )
            .values(lease_until=utcnow() + timedelta(seconds=lease))
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def wait_until(sessions: sessionmaker[Session], pk: int, not_before: datetime) -> None:
    """Record that a queued event's next message is sent now and due at ``not_before``."""
    with transaction(sessions) as session:
        session.execute(
            update(Event)
            .where(Event.id == pk, Event.status == EventStatus.QUEUED)
            .values(not_before=not_before, dispatched_at=utcnow())
        )


def clear_dispatched(sessions: sessionmaker[Session], pk: int) -> None:
    """Record that a dispatch failed, so the sweeper sends the event once it is due."""
    with transaction(sessions) as session:
        session.execute(update(Event).where(Event.id == pk).values(dispatched_at=None))


def stranded(
    sessions: sessionmaker[Session], window: Windows, *, limit: int = 1000
) -> list[tuple[int, Stranding]]:
    """Events that may need a new message, oldest first, with how they were stranded."""
    found: list[tuple[int, Stranding]] = []
    with sessions() as session:
        for kind, condition in window.conditions().items():
            rows = session.scalars(
                select(Event.id).where(condition).order_by(Event.id).limit(limit)
            )
            found.extend((pk, kind) for pk in rows)
    found.sort()
    return found[:limit]


def take_for_dispatch(
    sessions: sessionmaker[Session], pk: int, window: Windows
) -> tuple[str, str | None] | None:
    """Atomically take a stranded event for a new message; ``None`` if it is not stranded.

    The conditions of :func:`stranded` are re-checked in the UPDATE, so a delivery that
    claimed the event meanwhile is never disturbed.
    """
    with transaction(sessions) as session:
        result = session.execute(
            update(Event)
            .where(Event.id == pk, or_(*window.conditions().values()))
            .values(status=EventStatus.QUEUED, dispatched_at=utcnow(), lease_until=None)
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return None
        event = session.get(Event, pk)
        assert event is not None
        return event.event_type, event.request_id


def oldest_waiting_age(sessions: sessionmaker[Session], now: datetime | None = None) -> float:
    """Seconds the longest-waiting due queued event has waited (0 when none waits).

    A retry counts from its due time, not from when it arrived: waiting out a backoff is
    not a stuck queue.
    """
    now = now or utcnow()
    with sessions() as session:
        oldest = session.scalar(
            select(func.min(func.coalesce(Event.not_before, Event.received_at))).where(
                Event.status == EventStatus.QUEUED,
                or_(Event.not_before.is_(None), Event.not_before <= now),
            )
        )
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # SQLite returns naive datetimes from an aggregate
        oldest = oldest.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - oldest).total_seconds())
