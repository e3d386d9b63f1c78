"""Durable waits: what the worker, the CLI and the runs pages ask of the ``waits`` table.

A rule's `wait` step is a row (see :class:`deskwire.tables.Wait`). Every change of state
is one UPDATE guarded by ``state = 'waiting'``, so of two workers, a resend after a Redis
restart, a newer event and an operator, exactly one ends a wait, and it fires once.
Firing puts the wait's event back in the queue (the rest of the rule runs on that run);
cancelling also marks the rule and the step in the event's run history.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from deskwire.database import transaction
from deskwire.tables import Event, EventStatus, RuleRun, StepRun, Wait, WaitState, utcnow

# The run-history outcome of a rule (and status of its step) while it waits / once cancelled.
RULE_WAITING = "waiting"
RULE_CANCELLED = "cancelled"


@dataclass(frozen=True)
class WaitView:
    """One wait as plain data, for the worker, the CLI and the pages."""

    id: int
    event_pk: int
    event_id: str
    event_type: str
    rule_id: str
    step_id: str
    step_index: int
    source: str
    request_id: str | None
    due_at: datetime
    state: str
    cancelled_by: str | None
    created_at: datetime
    ended_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """The wait as a JSON-ready mapping (times as ISO-8601 UTC)."""
        data: dict[str, Any] = dict(self.__dict__)
        for key in ("due_at", "created_at", "ended_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data


@dataclass(frozen=True)
class Fired:
    """A wait that fired: its event is queued again and needs a message."""

    wait_id: int
    event_pk: int
    event_type: str
    request_id: str | None


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time deskwire stores is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)


def _view(wait: Wait, event: Event) -> WaitView:
    return WaitView(
        id=wait.id,
        event_pk=wait.event_pk,
        event_id=event.event_id,
        event_type=event.event_type,
        rule_id=wait.rule_id,
        step_id=wait.step_id,
        step_index=wait.step_index,
        source=wait.source,
        request_id=wait.request_id,
        due_at=_aware(wait.due_at),
        state=wait.state,
        cancelled_by=wait.cancelled_by,
        created_at=_aware(wait.created_at),
        ended_at=_aware(wait.ended_at) if wait.ended_at is not None else None,
    )


def add_wait(
    connection: Connection,
    *,
    event_pk: int,
    rule_id: str,
    step_id: str,
    step_index: int,
    source: str,
    request_id: str | None,
    due_at: datetime,
) -> None:
    """Store a new waiting wait (a write for the run's journal: durable with its history)."""
    connection.execute(
        insert(Wait).values(
            event_pk=event_pk,
            rule_id=rule_id,
            step_id=step_id,
            step_index=step_index,
            source=source,
            request_id=request_id,
            due_at=due_at,
            state=WaitState.WAITING,
            created_at=utcnow(),
        )
    )


def mark_skipped(connection: Connection, wait_id: int, reason: str) -> None:
    """Record that a fired wait's `until` no longer held (a write for the run's journal)."""
    connection.execute(
        update(Wait)
        .where(Wait.id == wait_id, Wait.state == WaitState.FIRED)
        .values(state=WaitState.SKIPPED, cancelled_by=reason)
    )


def find(
    sessions: sessionmaker[Session], event_pk: int, rule_id: str, step_id: str
) -> WaitView | None:
    """The wait of one step of one rule run, or ``None`` when the step never waited."""
    with sessions() as session:
        row = session.execute(
            select(Wait, Event)
            .join(Event, Event.id == Wait.event_pk)
            .where(Wait.event_pk == event_pk, Wait.rule_id == rule_id, Wait.step_id == step_id)
        ).first()
        return _view(row[0], row[1]) if row is not None else None


def get(sessions: sessionmaker[Session], wait_id: int) -> WaitView | None:
    """One wait by its id, or ``None``."""
    with sessions() as session:
        row = session.execute(
            select(Wait, Event).join(Event, Event.id == Wait.event_pk).where(Wait.id == wait_id)
        ).first()
        return _view(row[0], row[1]) if row is not None else None


def list_waits(
    sessions: sessionmaker[Session],
    *,
    states: Collection[str] | None = (WaitState.WAITING,),
    request_id: str | None = None,
    event_pk: int | None = None,
    limit: int = 200,
) -> list[WaitView]:
    """Waits, soonest due first (``states=None``: in any state, newest first)."""
    query = select(Wait, Event).join(Event, Event.id == Wait.event_pk)
    if states is not None:
        query = query.where(Wait.state.in_(list(states))).order_by(Wait.due_at, Wait.id)
    else:
        query = query.order_by(Wait.id.desc())
    if request_id is not None:
        query = query.where(Wait.request_id == request_id)
    if event_pk is not None:
        query = query.where(Wait.event_pk == event_pk)
    with sessions() as session:
        return [_view(row[0], row[1]) for row in session.execute(query.limit(limit))]


def cancelled_by_event(sessions: sessionmaker[Session], event_pk: int) -> list[WaitView]:
    """The waits that a newer event cancelled (its `cancel_waits_on`)."""
    marker = _event_marker(event_pk)
    with sessions() as session:
        rows = session.execute(
            select(Wait, Event)
            .join(Event, Event.id == Wait.event_pk)
            .where(Wait.state == WaitState.CANCELLED, Wait.cancelled_by.like(f"{marker} %"))
            .order_by(Wait.id)
        )
        return [_view(row[0], row[1]) for row in rows]


def _event_marker(event_pk: int) -> str:
    return f"event {event_pk}"


def fire_due(
    sessions: sessionmaker[Session], *, now: datetime | None = None, limit: int = 1000
) -> list[Fired]:
    """Fire the waits that are due and whose event has finished its run.

    Each fires in its own transaction: the wait moves from waiting to fired and its event
    from done (or failed) back to queued, counted as dispatched now (the caller sends the
    message; if that fails, it clears the dispatch and the sweeper sends it later). A wait
    whose event is queued or running stays waiting until that run ends: the run that
    resumes the rule must start after the wait fired.
    """
    now = now or utcnow()
    finished = (EventStatus.DONE, EventStatus.FAILED)
    with sessions() as session:
        due = session.execute(
            select(Wait.id, Wait.event_pk)
            .join(Event, Event.id == Wait.event_pk)
            .where(Wait.state == WaitState.WAITING, Wait.due_at <= now, Event.status.in_(finished))
            .order_by(Wait.due_at, Wait.id)
            .limit(limit)
        ).all()
    fired: list[Fired] = []
    for wait_id, event_pk in due:
        with transaction(sessions) as session:
            took = session.execute(
                update(Wait)
                .where(Wait.id == wait_id, Wait.state == WaitState.WAITING)
                .values(state=WaitState.FIRED, ended_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if not took.rowcount:  # type: ignore[attr-defined]
                continue  # cancelled or fired by someone else meanwhile
            reopened = session.execute(
                update(Event)
                .where(Event.id == event_pk, Event.status.in_(finished))
                # The resumed run gets the full number of tries, like a replay. Due from
                # now: the queue's age (health, metrics) counts from the firing, not from
                # when the event arrived.
                .values(
                    status=EventStatus.QUEUED,
                    dispatched_at=utcnow(),
                    finished_at=None,
                    error=None,
                    attempts=0,
                    not_before=utcnow(),
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )
            if not reopened.rowcount:  # type: ignore[attr-defined]
                # The event started another run meanwhile: keep waiting (in this same
                # transaction, so no one saw it fired), fire after that run.
                session.execute(
                    update(Wait)
                    .where(Wait.id == wait_id)
                    .values(state=WaitState.WAITING, ended_at=None)
                    .execution_options(synchronize_session=False)
                )
                continue
            event = session.get(Event, event_pk)
            assert event is not None
            fired.append(Fired(wait_id, event_pk, event.event_type, event.request_id))
    return fired


CancelOutcome = Literal["cancelled", "missing", "not_waiting"]


def cancel(sessions: sessionmaker[Session], wait_id: int, *, by: str) -> CancelOutcome:
    """Cancel one waiting wait (``by``: who, in words, kept in ``cancelled_by``)."""
    with transaction(sessions) as session:
        if session.get(Wait, wait_id) is None:
            return "missing"
        return "cancelled" if _cancel_one(session, wait_id, by) else "not_waiting"


def cancel_for_event(
    sessions: sessionmaker[Session],
    *,
    event_pk: int,
    event_type: str,
    source: str,
    request_id: str,
    rule_ids: Collection[str],
) -> list[int]:
    """Cancel the listed rules' waiting waits that earlier events about the request made.

    Returns the ids of the waits cancelled (by this call; a wait that fired meanwhile is
    left alone).
    """
    by = f"{_event_marker(event_pk)} ({event_type})"
    with transaction(sessions) as session:
        candidates = list(
            session.scalars(
                select(Wait.id).where(
                    Wait.state == WaitState.WAITING,
                    Wait.source == source,
                    Wait.request_id == request_id,
                    Wait.rule_id.in_(list(rule_ids)),
                    Wait.event_pk < event_pk,
                )
            )
        )
        return [wait_id for wait_id in candidates if _cancel_one(session, wait_id, by)]


def _cancel_one(session: Session, wait_id: int, by: str) -> bool:
    """Cancel a waiting wait and mark its rule and step in the run history."""
    took = session.execute(
        update(Wait)
        .where(Wait.id == wait_id, Wait.state == WaitState.WAITING)
        .values(state=WaitState.CANCELLED, cancelled_by=by, ended_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not took.rowcount:  # type: ignore[attr-defined]
        return False
    wait = session.get(Wait, wait_id)
    assert wait is not None
    detail = f"wait {wait_id} (step {wait.step_id}) cancelled by {by}; the rest did not run"
    session.execute(
        update(RuleRun)
        .where(RuleRun.event_pk == wait.event_pk, RuleRun.rule_id == wait.rule_id)
        .values(outcome=RULE_CANCELLED, detail=detail, finished_at=utcnow())
    )
    session.execute(
        update(StepRun)
        .where(
            StepRun.event_pk == wait.event_pk,
            StepRun.rule_id == wait.rule_id,
            StepRun.step_id == wait.step_id,
        )
        .values(status=RULE_CANCELLED, error=f"cancelled by {by}", finished_at=utcnow())
    )
    return True
