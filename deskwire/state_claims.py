"""Claims of request states: the atomic duplicate decision for events without a sender's id.

SDP sends no delivery id, and an id-only body is byte-identical for every change of its
request. Such an event repeats an earlier one only when both describe the same state of the
same request (same ``last_updated_time``) with the same body and event type from the same
source. The worker claims that state in the database; a unique constraint lets exactly one
event hold it, on SQLite and PostgreSQL alike, however many workers race.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from deskwire.claims import claim_once
from deskwire.tables import Event, StateClaim, utcnow


@dataclass(frozen=True)
class RequestState:
    """What makes two deliveries the same event when the sender gave no id."""

    source: str
    event_type: str
    request_id: str
    last_updated_time: str  # epoch milliseconds, digits only
    body_digest: str


@dataclass(frozen=True)
class Holder:
    """The earlier event that holds a state."""

    pk: int
    event_id: str


def _same(state: RequestState) -> ColumnElement[bool]:
    return and_(
        StateClaim.source == state.source,
        StateClaim.event_type == state.event_type,
        StateClaim.request_id == state.request_id,
        StateClaim.last_updated_time == state.last_updated_time,
        StateClaim.body_digest == state.body_digest,
    )


def claim_state(
    sessions: sessionmaker[Session], state: RequestState, event_pk: int, *, window: int
) -> Holder | None:
    """Claim ``state`` for ``event_pk``: ``None`` when it is this event's, else the holder.

    Idempotent for the claiming event (a run repeated after a crash finds its own claim).
    A claim lasts ``window`` seconds (the dedupe window); the same state sent again after
    that counts as new.
    """
    return claim_once(
        sessions,
        StateClaim,
        _same(state),
        lambda session: _holder(session, state),
        lambda: StateClaim(
            source=state.source,
            event_type=state.event_type,
            request_id=state.request_id,
            last_updated_time=state.last_updated_time,
            body_digest=state.body_digest,
            event_pk=event_pk,
            expires_at=utcnow() + timedelta(seconds=window),
        ),
        event_pk=event_pk,
        what=f"the state of request {state.request_id}",
    )


def _holder(session: Session, state: RequestState) -> Holder | None:
    row = session.execute(
        select(StateClaim.event_pk, Event.event_id)
        .join(Event, Event.id == StateClaim.event_pk)
        .where(_same(state))
    ).first()
    return Holder(int(row[0]), str(row[1])) if row is not None else None
