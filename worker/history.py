"""Run history: what each rule and step did for an event.

Rule and step records, the frozen inputs and the request state go through a
:class:`Journal`: they are collected and made durable together, in one transaction, at the
next point that needs them durable: before any step calls out (so a step's success and a
rule's "running" verdict are stored before any later effect, exactly as when each was
committed on its own), and with the event's final status. On a real disk each commit waits
for an fsync; one per record made history most of a worker's time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from deskwire.database import begin, engine_of, reading, transaction
from deskwire.tables import Event, RequestState, RuleRun, StepRun, utcnow

# A write of the journal: Core statements on the connection of the transaction that makes
# it durable (no ORM unit of work: these run on every event).
Write = Callable[[Connection], None]


def rule_outcomes(sessions: sessionmaker[Session], event_pk: int) -> dict[str, str]:
    """The recorded outcome of each rule of an event, by rule id."""
    with sessions() as session:
        rows = session.execute(
            select(RuleRun.rule_id, RuleRun.outcome).where(RuleRun.event_pk == event_pk)
        )
        return {str(rule_id): str(outcome) for rule_id, outcome in rows.tuples()}


def succeeded_steps(
    sessions: sessionmaker[Session], event_pk: int, rule_id: str
) -> dict[str, dict[str, Any]]:
    """Outputs of the steps of a rule that already succeeded for this event."""
    with sessions() as session:
        rows = session.execute(
            select(StepRun.step_id, StepRun.output).where(
                StepRun.event_pk == event_pk,
                StepRun.rule_id == rule_id,
                StepRun.status == "succeeded",
            )
        )
        return {step_id: dict(output or {}) for step_id, output in rows}


class Journal:
    """The run-history writes of one run of one event, not yet durable."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._writes: list[Write] = []
        self.flushes = 0  # transactions made by flush(): the first made the run's claim durable

    def add(self, write: Write) -> None:
        """Queue a write (a function of the connection of the transaction that makes it)."""
        self._writes.append(write)

    def take(self) -> list[Write]:
        """The queued writes, for a caller that makes them durable in its own transaction."""
        writes, self._writes = self._writes, []
        return writes

    def flush(self) -> None:
        """Commit every queued write now, in one transaction (none if nothing is queued).

        The first flush of a run holds the claim and what was decided before anything was
        called out, so it records no effect of the run: its commit does not wait for the
        disk (a power cut that loses it finds the event queued, or its lease lapsed, and it
        runs again, as it would if the cut came just before the claim). Every later flush,
        and the final status, is synced, and with it everything committed before.
        """
        writes = self.take()
        if writes:
            with begin(engine_of(self._sessions), synced=self.flushes > 0) as connection:
                for write in writes:
                    write(connection)
            self.flushes += 1


def _upsert(
    connection: Connection,
    table: Table,
    keys: tuple[str, ...],
    values: dict[str, Any],
    changing: dict[str, Any],
) -> None:
    """Insert a row, or update the existing one with the same ``keys`` (one statement).

    Run-history records are written on every event; a read before each write (as the ORM
    does) doubled the statements of a run. ``INSERT … ON CONFLICT DO UPDATE`` exists on
    both databases deskwire supports, under the unique constraints of the tables.
    """
    dialect = connection.dialect.name
    statement = _UPSERTS.get((dialect, table.name, tuple(changing)))
    if statement is None:
        make = postgresql_insert if dialect == "postgresql" else sqlite_insert
        insert = make(table)
        changes: dict[str, Any] = {name: insert.excluded[name] for name in changing}
        if "attempts" in changes:  # tries are counted across runs
            changes["attempts"] = table.c.attempts + 1
        statement = insert.on_conflict_do_update(index_elements=list(keys), set_=changes)
        _UPSERTS[(dialect, table.name, tuple(changing))] = statement
    connection.execute(statement, {**values, **changing})


# Built once per dialect and shape: building them per record cost more than running them.
_UPSERTS: dict[tuple[str, str, tuple[str, ...]], Any] = {}
_RULE_KEYS = ("event_pk", "rule_id")
_STEP_KEYS = ("event_pk", "rule_id", "step_id")


def record_rule(
    connection: Connection,
    event_pk: int,
    rule_id: str,
    *,
    matched: bool,
    outcome: str,
    detail: str | None,
    shadow: bool = False,
) -> None:
    """Insert or overwrite the outcome of one rule for one event (``shadow``: the rule ran
    in shadow mode, its steps' requests were recorded, not sent)."""
    _upsert(
        connection,
        RuleRun.__table__,  # type: ignore[arg-type]
        _RULE_KEYS,
        {"event_pk": event_pk, "rule_id": rule_id},
        {
            "matched": matched,
            "outcome": outcome,
            "detail": detail,
            "shadow": shadow,
            "finished_at": utcnow(),
        },
    )


def record_step(
    connection: Connection,
    event_pk: int,
    rule_id: str,
    step_id: str,
    *,
    uses: str,
    status: str,
    output: dict[str, Any] | None = None,
    error: str | None = None,
    duration_ms: int | None = None,
    http_status: int | None = None,
) -> None:
    """Insert or overwrite one step's result; tries are counted, timing is the last try's."""
    _upsert(
        connection,
        StepRun.__table__,  # type: ignore[arg-type]
        _STEP_KEYS,
        {"event_pk": event_pk, "rule_id": rule_id, "step_id": step_id},
        {
            "uses": uses,
            "status": status,
            "output": output,
            "error": error,
            "attempts": 1,
            "duration_ms": duration_ms,
            "http_status": http_status,
            "finished_at": utcnow(),
        },
    )


def previous_state(
    sessions: sessionmaker[Session], source: str, request_id: str | None
) -> dict[str, Any] | None:
    """The last state deskwire saw of a request, or ``None``."""
    if not request_id:
        return None
    with reading(engine_of(sessions)) as connection:
        state = connection.execute(
            _READ_STATE, {"source": source, "request_id": request_id}
        ).scalar()
    return dict(state) if state is not None else None


def save_state(
    connection: Connection,
    source: str,
    request_id: str,
    state: dict[str, Any],
    known: dict[str, Any] | None,
) -> None:
    """Remember the state of a request for later ``changed`` conditions.

    Merged over ``known``, the state the run read (its ``previous``): a webhook that carries
    a few fields does not forget the others. Not read again here (a statement per event):
    events about one request run one at a time, in order (the claim), so no other run
    saved a state of it since.
    """
    merged = state if known is None else {**known, **state}
    _upsert(
        connection,
        RequestState.__table__,  # type: ignore[arg-type]
        ("source", "request_id"),
        {"source": source, "request_id": request_id},
        {"state": merged, "updated_at": utcnow()},
    )


_READ_STATE = select(RequestState.state).where(
    RequestState.source == bindparam("source"), RequestState.request_id == bindparam("request_id")
)


def record_identity(connection: Connection, event_pk: int, identity: str) -> None:
    """Record why the event is (or is not) a repeat of an earlier one (a journal write)."""
    connection.execute(_RECORD_IDENTITY, {"pk": event_pk, "identity": identity})


_RECORD_IDENTITY = (
    update(Event).where(Event.id == bindparam("pk")).values(identity=bindparam("identity"))
)


def set_request_id(sessions: sessionmaker[Session], event_pk: int, request_id: str) -> None:
    """Store the internal request id found for an event that named only a display id."""
    with transaction(sessions) as session:
        session.execute(update(Event).where(Event.id == event_pk).values(request_id=request_id))
