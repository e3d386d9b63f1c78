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

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from deskwire.database import transaction
from deskwire.tables import Event, RequestState, RuleRun, StepRun, utcnow

Write = Callable[[Session], None]


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
        """Queue a write (a function of the session of the transaction that makes it)."""
        self._writes.append(write)

    def take(self) -> list[Write]:
        """The queued writes, for a caller that makes them durable in its own transaction."""
        writes, self._writes = self._writes, []
        return writes

    def flush(self) -> None:
        """Make every queued write durable now, in one transaction (none if nothing is queued)."""
        writes = self.take()
        if writes:
            with transaction(self._sessions) as session:
                for write in writes:
                    write(session)
            self.flushes += 1


def record_rule(
    session: Session,
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
    row = session.scalar(
        select(RuleRun).where(RuleRun.event_pk == event_pk, RuleRun.rule_id == rule_id)
    )
    if row is None:
        row = RuleRun(event_pk=event_pk, rule_id=rule_id)
        session.add(row)
    row.matched = matched
    row.outcome = outcome
    row.detail = detail
    row.shadow = shadow
    row.finished_at = utcnow()


def record_step(
    session: Session,
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
    row = session.scalar(
        select(StepRun).where(
            StepRun.event_pk == event_pk,
            StepRun.rule_id == rule_id,
            StepRun.step_id == step_id,
        )
    )
    if row is None:
        row = StepRun(event_pk=event_pk, rule_id=rule_id, step_id=step_id, attempts=0)
        session.add(row)
    row.uses = uses
    row.status = status
    row.output = output
    row.error = error
    row.attempts = (row.attempts or 0) + 1
    row.duration_ms = duration_ms
    row.http_status = http_status
    row.finished_at = utcnow()


def previous_state(
    sessions: sessionmaker[Session], source: str, request_id: str | None
) -> dict[str, Any] | None:
    """The last state deskwire saw of a request, or ``None``."""
    if not request_id:
        return None
    with sessions() as session:
        row = session.get(RequestState, (source, request_id))
        return dict(row.state) if row is not None else None


def save_state(session: Session, source: str, request_id: str, state: dict[str, Any]) -> None:
    """Remember the state of a request for later ``changed`` conditions.

    Merged over what was known: a webhook that carries a few fields does not forget the
    others.
    """
    row = session.get(RequestState, (source, request_id))
    if row is None:
        session.add(RequestState(source=source, request_id=request_id, state=state))
    else:
        row.state = {**row.state, **state}
        row.updated_at = utcnow()


def freeze_inputs(
    session: Session,
    event_pk: int,
    request: dict[str, Any],
    previous: dict[str, Any] | None,
    own: bool,
    identity: str | None = None,
) -> None:
    """Keep what the first run saw, for its retries and replays, and the duplicate decision."""
    session.execute(
        update(Event)
        .where(Event.id == event_pk)
        .values(
            request_snapshot=request,
            previous_snapshot=previous,
            caused_by_deskwire=own,
            identity=identity,
        )
    )


def record_identity(sessions: sessionmaker[Session], event_pk: int, identity: str) -> None:
    """Record why the event is (or is not) a repeat of an earlier one."""
    with transaction(sessions) as session:
        session.execute(update(Event).where(Event.id == event_pk).values(identity=identity))


def set_request_id(sessions: sessionmaker[Session], event_pk: int, request_id: str) -> None:
    """Store the internal request id found for an event that named only a display id."""
    with transaction(sessions) as session:
        session.execute(update(Event).where(Event.id == event_pk).values(request_id=request_id))
