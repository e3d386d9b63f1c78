"""Events and their run history as plain data, for the CLI (and later the pages)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from deskwire import event_store
from deskwire.database import create_schema, make_engine, session_factory
from deskwire.settings import Settings
from deskwire.tables import Event, RuleRun, StepRun


def _sessions(settings: Settings) -> Any:
    engine = make_engine(settings.database_url)
    create_schema(engine)
    return session_factory(engine)


def _row(event: Event) -> dict[str, Any]:
    return {
        "pk": event.id,
        "event_id": event.event_id,
        "source": event.source,
        "event_type": event.event_type,
        "request_id": event.request_id,
        "status": event.status,
        "attempts": event.attempts,
        "error": event.error,
        "ruleset_version": event.ruleset_version,
        "caused_by_deskwire": event.caused_by_deskwire,
        "identity": event.identity,
        "received_at": event.received_at,
        "finished_at": event.finished_at,
    }


def list_events(settings: Settings, *, status: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest events, optionally of one status."""
    query = select(Event).order_by(Event.id.desc()).limit(limit)
    if status:
        query = query.where(Event.status == status)
    with _sessions(settings)() as session:
        return [_row(event) for event in session.scalars(query)]


def show_event(settings: Settings, pk: int) -> dict[str, Any] | None:
    """One event with the outcome of each rule and step."""
    with _sessions(settings)() as session:
        event = session.get(Event, pk)
        if event is None:
            return None
        data = _row(event)
        data["payload"] = event.payload
        data["rules"] = [
            {"rule": r.rule_id, "matched": r.matched, "outcome": r.outcome, "detail": r.detail}
            for r in session.scalars(select(RuleRun).where(RuleRun.event_pk == pk))
        ]
        data["steps"] = [
            {
                "rule": s.rule_id,
                "step": s.step_id,
                "uses": s.uses,
                "status": s.status,
                "attempts": s.attempts,
                "error": s.error,
            }
            for s in session.scalars(select(StepRun).where(StepRun.event_pk == pk))
        ]
        return data


def describe_event(data: dict[str, Any]) -> str:
    """A readable report of :func:`show_event`'s data."""
    lines = [
        f"event {data['pk']} ({data['event_id']}): {data['event_type']} from {data['source']}, "
        f"request {data['request_id'] or '-'}",
        f"  status {data['status']} after {data['attempts']} tries, "
        f"rule set {data['ruleset_version'] or '-'}",
    ]
    if data["identity"]:
        lines.append(f"  identity: {data['identity']}")
    if data["error"]:
        lines.append(f"  error: {data['error']}")
    for rule in data["rules"]:
        lines.append(
            f"  rule {rule['rule']}: {rule['outcome']}"
            + (f" — {rule['detail']}" if rule["detail"] else "")
        )
        for step in data["steps"]:
            if step["rule"] == rule["rule"]:
                error = f" — {step['error']}" if step["error"] else ""
                lines.append(f"    step {step['step']} ({step['uses']}): {step['status']}{error}")
    return "\n".join(lines)


def replay_events(settings: Settings, pks: Iterable[int]) -> list[str]:
    """Queue events again; returns one line per event saying what happened."""
    from deskwire.worker_runtime import broker_url_or_exit
    from worker.enqueue import EnqueueError, Enqueuer

    sessions = _sessions(settings)
    queue = Enqueuer(settings, broker_url_or_exit(settings))
    lines = []
    for pk in pks:
        if not event_store.replay(sessions, pk):
            lines.append(
                f"event {pk}: not replayed (it does not exist, is still in progress or is a "
                "duplicate of an earlier event)"
            )
            continue
        with sessions() as session:
            event = session.get(Event, pk)
            assert event is not None
            event_type, request_id = event.event_type, event.request_id
        try:
            queue.enqueue(pk, event_type=event_type, request_id=request_id)
            event_store.mark_dispatched(sessions, pk)
            lines.append(f"event {pk}: queued again")
        except EnqueueError as exc:
            lines.append(f"event {pk}: stored as queued; the worker dispatches it later ({exc})")
    return lines
