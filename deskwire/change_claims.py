"""Claims of request changes: a webhook and a reconciled event of one change run once.

Reconciliation (:mod:`worker.reconciler`) turns requests SDP lists as changed into events
marked ``reconciled``. The webhook of the same change may have come before, may still be
queued, or may come later; the first of them the worker processes claims the change
(source, request id, ``last_updated_time``) here, and a unique constraint makes that
decision atomic across workers on SQLite and PostgreSQL alike. The claim lasts the dedupe
window, like the claims of request states (:mod:`deskwire.state_claims`), and expired
claims are purged with them (``event_store.purge_expired_keys``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, select, tuple_
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from deskwire.claims import claim_once
from deskwire.tables import Event, RequestChange, utcnow


@dataclass(frozen=True)
class Change:
    """One state of one request of one source."""

    source: str
    request_id: str
    last_updated_time: str  # epoch milliseconds, digits only


@dataclass(frozen=True)
class ChangeHolder:
    """The event that claimed a change first."""

    pk: int
    event_id: str
    event_type: str
    reconciled: bool


def _same(change: Change) -> ColumnElement[bool]:
    return and_(
        RequestChange.source == change.source,
        RequestChange.request_id == change.request_id,
        RequestChange.last_updated_time == change.last_updated_time,
    )


def claim_change(
    sessions: sessionmaker[Session],
    change: Change,
    *,
    event_pk: int,
    event_type: str,
    reconciled: bool,
    window: int,
) -> ChangeHolder | None:
    """Claim ``change`` for ``event_pk``: ``None`` when it is this event's, else the holder.

    Idempotent for the claiming event (a run repeated after a crash finds its own claim).
    """
    return claim_once(
        sessions,
        RequestChange,
        _same(change),
        lambda session: _holder(session, change),
        lambda: RequestChange(
            source=change.source,
            request_id=change.request_id,
            last_updated_time=change.last_updated_time,
            event_type=event_type,
            reconciled=reconciled,
            event_pk=event_pk,
            expires_at=utcnow() + timedelta(seconds=window),
        ),
        event_pk=event_pk,
        what=f"the change of request {change.request_id}",
    )


def _holder(session: Session, change: Change) -> ChangeHolder | None:
    row = session.execute(
        select(RequestChange.event_pk, Event.event_id, RequestChange.event_type,
               RequestChange.reconciled)
        .join(Event, Event.id == RequestChange.event_pk)
        .where(_same(change))
    ).first()  # fmt: skip
    if row is None:
        return None
    return ChangeHolder(int(row[0]), str(row[1]), str(row[2]), bool(row[3]))


def claimed_already(
    sessions: sessionmaker[Session], source: str, changes: list[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which of ``changes`` ((request id, last_updated_time) pairs) some event claimed.

    Reconciliation reads these to skip changes already handled; the worker's claim stays
    the decision (a change claimed after this read is dropped when its event is processed).
    """
    if not changes:
        return set()
    with sessions() as session:
        rows = session.execute(
            select(RequestChange.request_id, RequestChange.last_updated_time).where(
                RequestChange.source == source,
                tuple_(RequestChange.request_id, RequestChange.last_updated_time).in_(changes),
                RequestChange.expires_at >= utcnow(),
            )
        )
        return {(str(rid), str(lut)) for rid, lut in rows}
