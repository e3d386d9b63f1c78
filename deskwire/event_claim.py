"""Claiming a stored event for one run: whether it may run now, and the atomic claim.

An event is claimable when it is queued, or running with a lapsed lease, and no earlier
unfinished event about the same request exists (events about one request run one at a time,
in order of arrival). The worker reads the event with :func:`claimable` and claims it with
the first transaction of its run (:class:`Claim`), before anything of the run calls out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, exists, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from deskwire.database import engine_of, reading
from deskwire.event_store import UNFINISHED
from deskwire.tables import Event, EventStatus, RequestState, utcnow


def earlier_unfinished(session: Session, event: Event) -> int | None:
    """The id of an earlier unfinished event about the same request, if one exists."""
    if not event.request_id:
        return None
    return session.scalar(
        select(Event.id)
        .where(
            Event.source == event.source,
            Event.request_id == event.request_id,
            Event.id < event.id,
            Event.status.in_(UNFINISHED),
        )
        .order_by(Event.id)
        .limit(1)
    )


class NotClaimed(Exception):
    """The event could not be claimed: another delivery holds it, or it is finished or blocked."""


def _claimable() -> ColumnElement[bool]:
    """Queued, or running with a lapsed lease (at ``:now``); and no earlier unfinished
    event about the same request."""
    earlier = aliased(Event)
    blocked = exists().where(
        earlier.source == Event.source,
        earlier.request_id == Event.request_id,
        earlier.id < Event.id,
        earlier.status.in_(UNFINISHED),
    )
    return and_(
        or_(
            Event.status == EventStatus.QUEUED,
            and_(Event.status == EventStatus.RUNNING, Event.lease_until < bindparam("now")),
        ),
        or_(Event.request_id.is_(None), ~blocked),
    )


# Built once: building these per event cost more than running them (SQLite, in process).
# The last state deskwire saved of the event's request comes with it: the run reads it (the
# `previous` of its rules) and merges into it, and no other event about the request runs
# between this read and the end of the run (see _claimable), so one read serves both.
_READ_CLAIMABLE = (
    select(*Event.__table__.columns, RequestState.state.label("request_state"))
    .outerjoin(
        RequestState,
        and_(RequestState.source == Event.source, RequestState.request_id == Event.request_id),
    )
    .where(Event.id == bindparam("pk"), _claimable())
)
_CLAIM = (
    update(Event)
    .where(Event.id == bindparam("pk"), _claimable())
    .values(
        status=EventStatus.RUNNING,
        started_at=bindparam("now"),
        lease_until=bindparam("lease_until"),
        not_before=None,
        attempts=Event.attempts + 1,
        error=None,
        claimed_by=bindparam("claimer"),
    )
    .execution_options(synchronize_session=False)
)
_FROZEN = {
    "request_snapshot": bindparam("request", type_=Event.request_snapshot.type),
    "previous_snapshot": bindparam("previous", type_=Event.previous_snapshot.type),
    "caused_by_deskwire": bindparam("own"),
    "identity": bindparam("identity"),
}
_CLAIM_AND_FREEZE = _CLAIM.values(_FROZEN)
_FREEZE = update(Event).where(Event.id == bindparam("pk")).values(_FROZEN)


@dataclass(frozen=True)
class Claimable:
    """An event :func:`claim` would take now, with the state deskwire last saved of its
    request (``None``: none saved, or the event names no request)."""

    event: Event
    request_state: dict[str, Any] | None


def claimable(sessions: sessionmaker[Session], pk: int) -> Claimable | None:
    """The event (not attached to a session) if :func:`claim` would take it now, else ``None``.

    A read, not a claim: the worker reads the event with it, decides what the run needs,
    and claims it in the transaction of its first durable write (:func:`claim_in`).
    """
    # A Core read and a plain instance: the ORM's loading machinery cost more than the query.
    with reading(engine_of(sessions)) as connection:
        row = connection.execute(_READ_CLAIMABLE, {"pk": pk, "now": utcnow()}).mappings().first()
    if row is None:
        return None
    columns = dict(row)
    state = columns.pop("request_state")
    return Claimable(Event(**columns), dict(state) if state is not None else None)


def claim(sessions: sessionmaker[Session], pk: int, *, claimer: str, lease: float) -> bool:
    """Move an event to running for ``claimer`` (the task delivery id), leased for ``lease`` s.

    A queued event can be claimed; a running one only once its lease has lapsed (its
    worker died and stopped renewing it). Atomic, so two deliveries never run the event at
    the same time. Earlier unfinished events about the same request block the claim
    (processing in order of arrival).
    """
    try:
        with engine_of(sessions).begin() as connection:
            claim_in(connection, pk, claimer=claimer, lease=lease)
    except NotClaimed:
        return False
    return True


@dataclass(frozen=True)
class FrozenInputs:
    """What an event's first run saw, kept for its retries and replays, and why it is (or
    is not) a repeat of an earlier event."""

    request: dict[str, Any]
    previous: dict[str, Any] | None
    own: bool
    identity: str | None


def _frozen(inputs: FrozenInputs) -> dict[str, Any]:
    """The bound values of :data:`_FROZEN`."""
    return {
        "request": inputs.request,
        "previous": inputs.previous,
        "own": inputs.own,
        "identity": inputs.identity,
    }


def claim_in(
    connection: Connection,
    pk: int,
    *,
    claimer: str,
    lease: float,
    inputs: FrozenInputs | None = None,
) -> None:
    """:func:`claim` inside the caller's transaction; raises :class:`NotClaimed` (the caller
    rolls back what it wrote with the claim). ``inputs`` are stored by the same UPDATE."""
    now = utcnow()
    params = {"pk": pk, "now": now, "lease_until": now + timedelta(seconds=lease)}
    params["claimer"] = claimer
    if inputs is not None:
        params.update(_frozen(inputs))
    result = connection.execute(_CLAIM if inputs is None else _CLAIM_AND_FREEZE, params)
    if not result.rowcount:
        raise NotClaimed(f"event {pk} cannot be claimed now")


def freeze_in(connection: Connection, pk: int, inputs: FrozenInputs) -> None:
    """Store an event's frozen inputs in the caller's transaction (claimed already)."""
    connection.execute(_FREEZE, {"pk": pk, **_frozen(inputs)})


@dataclass
class Claim:
    """The claim of one run as a write of its first transaction (the worker's journal).

    Inputs decided before that transaction ride in the claim's UPDATE (set ``inputs`` while
    ``made`` is false): one statement where the claim and the inputs were two.
    """

    pk: int
    claimer: str
    lease: float
    inputs: FrozenInputs | None = None
    made: bool = False  # its UPDATE ran: later inputs need a write of their own

    def __call__(self, connection: Connection) -> None:
        claim_in(connection, self.pk, claimer=self.claimer, lease=self.lease, inputs=self.inputs)
        self.made = True
