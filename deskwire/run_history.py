"""Reading and pruning the run history: filtered, paged event lists, one run, retention.

Used by the runs pages (``/runs``) and ``deskwire purge``; the worker writes the history
(:mod:`worker.history`). Payloads leave here redacted: a key that looks like a credential,
and any value holding one of the configured secrets, is replaced by :data:`REDACTED`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from deskwire.database import transaction
from deskwire.tables import (
    DedupeKey,
    Event,
    EventStatus,
    RuleRun,
    StateClaim,
    StepRun,
    Wait,
    WaitState,
)

REDACTED = "[redacted]"
# Keys whose values are credentials wherever they appear in a webhook body.
_SECRET_KEY = re.compile(
    r"(token|secret|passw(or)?d|pwd|api[-_ ]?key|apikey|authori[sz]ation|credential|"
    r"private[-_ ]?key|cookie|session[-_ ]?id|signature|client[-_ ]?secret)",
    re.IGNORECASE,
)
FINISHED = (EventStatus.DONE, EventStatus.FAILED, EventStatus.DUPLICATE)


def _purgeable(older_than: datetime) -> Any:
    """Finished events received before ``older_than`` with no wait still waiting (a purge
    must not take away the rest of a rule that is still to run)."""
    waiting = exists().where(Wait.event_pk == Event.id, Wait.state == WaitState.WAITING)
    return (Event.status.in_(FINISHED)) & (Event.received_at < older_than) & ~waiting


PURGE_BATCH = 500  # events per delete: a purge never holds a long write lock


def redact(value: Any, secrets: Sequence[str] = ()) -> Any:
    """``value`` with credential-looking keys and the given secret values replaced."""
    if isinstance(value, dict):
        return {
            key: REDACTED if _SECRET_KEY.search(str(key)) else redact(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item, secrets) for item in value]
    if isinstance(value, str) and any(secret and secret in value for secret in secrets):
        return REDACTED
    return value


@dataclass(frozen=True)
class RunFilters:
    """What the runs list is narrowed to; ``None`` means any."""

    status: str | None = None
    rule: str | None = None  # events this rule matched
    request_id: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class RunRow:
    """One event in the runs list."""

    pk: int
    event_id: str
    source: str
    event_type: str
    request_id: str | None
    status: str
    attempts: int
    error: str | None
    received_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class RunPage:
    """One page of the runs list, newest first."""

    rows: tuple[RunRow, ...]
    page: int
    per_page: int
    has_next: bool


@dataclass(frozen=True)
class RuleOutcome:
    """What one rule did for an event, with its steps."""

    rule_id: str
    matched: bool
    outcome: str
    detail: str | None
    steps: tuple[StepOutcome, ...]
    # `mode: shadow`: its steps' requests were recorded (StepOutcome.would_send), not sent.
    shadow: bool = False


@dataclass(frozen=True)
class StepOutcome:
    """One step of a matched rule."""

    step_id: str
    uses: str
    status: str
    duration_ms: int | None
    http_status: int | None
    attempts: int
    error: str | None
    # A shadow step: the requests it would have sent ({method, url, headers, body}), and
    # why its `if` was taken as true when it could not be decided.
    would_send: tuple[dict[str, Any], ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class RunDetail:
    """One event with its (redacted) payload and the outcome of each rule and step."""

    run: RunRow
    payload: Any
    identity: str | None
    ruleset_version: str | None
    caused_by_deskwire: bool | None
    rules: tuple[RuleOutcome, ...]

    @property
    def live_rules(self) -> tuple[RuleOutcome, ...]:
        """The rules that ran for real."""
        return tuple(rule for rule in self.rules if not rule.shadow)

    @property
    def shadow_rules(self) -> tuple[RuleOutcome, ...]:
        """The rules in shadow mode: what they would have sent, nothing called."""
        return tuple(rule for rule in self.rules if rule.shadow)

    @property
    def replayable(self) -> bool:
        """Whether a replay may be asked for (what ``deskwire events replay`` accepts)."""
        return self.run.status == EventStatus.FAILED


def _row(event: Event) -> RunRow:
    return RunRow(
        pk=event.id,
        event_id=event.event_id,
        source=event.source,
        event_type=event.event_type,
        request_id=event.request_id,
        status=event.status,
        attempts=event.attempts,
        error=event.error,
        received_at=event.received_at,
        finished_at=event.finished_at,
    )


def list_runs(
    sessions: sessionmaker[Session], filters: RunFilters, *, page: int = 1, per_page: int = 50
) -> RunPage:
    """The events ``filters`` selects, newest first, ``per_page`` per page (pages from 1)."""
    page = max(1, page)
    query = select(Event)
    if filters.status:
        query = query.where(Event.status == filters.status)
    if filters.request_id:
        query = query.where(Event.request_id == filters.request_id)
    if filters.source:
        query = query.where(Event.source == filters.source)
    if filters.since is not None:
        query = query.where(Event.received_at >= filters.since)
    if filters.until is not None:
        query = query.where(Event.received_at < filters.until)
    if filters.rule:
        # The events the rule matched (every rule for the event type records a verdict).
        matched = select(RuleRun.id).where(
            RuleRun.event_pk == Event.id, RuleRun.rule_id == filters.rule, RuleRun.matched
        )
        query = query.where(exists(matched))
    query = query.order_by(Event.id.desc()).offset((page - 1) * per_page).limit(per_page + 1)
    with sessions() as session:
        events = list(session.scalars(query))
    rows = tuple(_row(event) for event in events[:per_page])
    return RunPage(rows, page, per_page, has_next=len(events) > per_page)


def run_detail(
    sessions: sessionmaker[Session], pk: int, secrets: Sequence[str] = ()
) -> RunDetail | None:
    """Event ``pk`` with its rules and steps in the order they ran, or ``None``."""
    with sessions() as session:
        event = session.get(Event, pk)
        if event is None:
            return None
        rule_rows = session.scalars(
            select(RuleRun).where(RuleRun.event_pk == pk).order_by(RuleRun.id)
        ).all()
        step_rows = session.scalars(
            select(StepRun).where(StepRun.event_pk == pk).order_by(StepRun.id)
        ).all()
        rules = tuple(
            RuleOutcome(
                rule_id=rule.rule_id,
                matched=rule.matched,
                outcome=rule.outcome,
                detail=rule.detail,
                steps=tuple(
                    StepOutcome(
                        step_id=step.step_id,
                        uses=step.uses,
                        status=step.status,
                        duration_ms=step.duration_ms,
                        http_status=step.http_status,
                        attempts=step.attempts,
                        error=step.error,
                        **_would_send(step, secrets),
                    )
                    for step in step_rows
                    if step.rule_id == rule.rule_id
                ),
                shadow=rule.shadow,
            )
            for rule in rule_rows
        )
        return RunDetail(
            run=_row(event),
            payload=redact(event.payload, secrets),
            identity=event.identity,
            ruleset_version=event.ruleset_version,
            caused_by_deskwire=event.caused_by_deskwire,
            rules=rules,
        )


def _would_send(step: StepRun, secrets: Sequence[str]) -> dict[str, Any]:
    """A shadow step's recorded requests and note (masked when recorded; the configured
    secrets are redacted here as well), as :class:`StepOutcome` fields."""
    if step.status != "shadow" or not isinstance(step.output, dict):
        return {}
    sent = step.output.get("would_send")
    requests = tuple(redact(r, secrets) for r in sent if isinstance(r, dict)) if sent else ()
    note = step.output.get("note")
    return {"would_send": requests, "note": str(note) if note else None}


def sources(sessions: sessionmaker[Session]) -> list[str]:
    """The sources events came from (for the filter's choices)."""
    with sessions() as session:
        return [str(s) for s in session.scalars(select(Event.source).distinct().limit(200))]


def purge_finished(
    sessions: sessionmaker[Session], *, older_than: datetime, limit: int | None = None
) -> int:
    """Delete finished events received before ``older_than`` with their history.

    Queued and running events are never touched (they are not finished, and deleting one
    would lose it). ``limit`` bounds one call (the worker's periodic purge); ``None``
    deletes all in batches. Returns how many events were deleted.
    """
    deleted = 0
    while limit is None or deleted < limit:
        batch = PURGE_BATCH if limit is None else min(PURGE_BATCH, limit - deleted)
        with transaction(sessions) as session:
            pks = list(
                session.scalars(
                    select(Event.id).where(_purgeable(older_than)).order_by(Event.id).limit(batch)
                )
            )
            if not pks:
                break
            _delete_events(session, pks)
        deleted += len(pks)
    return deleted


def _delete_events(session: Session, pks: Iterable[int]) -> None:
    # Children first: the cascade is declared, but not every database enforces it.
    chosen = list(pks)
    for table in (StepRun, RuleRun, DedupeKey, StateClaim, Wait):
        session.execute(delete(table).where(table.event_pk.in_(chosen)))
    session.execute(delete(Event).where(Event.id.in_(chosen)))


def count_finished_before(sessions: sessionmaker[Session], older_than: datetime) -> int:
    """How many events a purge with ``older_than`` would delete."""
    with sessions() as session:
        query = select(func.count()).where(_purgeable(older_than))
        return int(session.scalar(query) or 0)
