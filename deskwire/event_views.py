"""Events and their run history as plain data, for the CLI (and later the pages)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from deskwire import event_store, wait_store
from deskwire.database import session_factory
from deskwire.settings import Settings
from deskwire.state import open_database
from deskwire.tables import Event, RuleRun, StepRun


class EventNotFound(LookupError):
    """A reference matched no event, or several (the message says which)."""


def _sessions(settings: Settings) -> Any:
    return session_factory(open_database(settings))


def _resolve(session: Session, ref: str) -> int:
    """The number of the event ``ref`` names: deskwire's number, or the sender's event id.

    A number that is an event's number means that event; otherwise ``ref`` is looked up
    as the sender's event id, which must name one event (ids recur after the dedupe window
    and across sources; then the numbers are listed to choose from).
    """
    ref = ref.strip()
    if ref.isdigit() and session.get(Event, int(ref)) is not None:
        return int(ref)
    matches = session.execute(
        select(Event.id, Event.source, Event.received_at)
        .where(Event.event_id == ref)
        .order_by(Event.id.desc())
        .limit(20)
    ).all()
    if not matches:
        raise EventNotFound(f"no event with the number or event id {ref!r}")
    if len(matches) > 1:
        listed = ", ".join(
            f"{pk} (source {source}, received {received:%Y-%m-%d %H:%M})"
            for pk, source, received in matches
        )
        raise EventNotFound(f"event id {ref!r} names several events: {listed}; give the number")
    return int(matches[0].id)


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
        "reconciled": event.reconciled,
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


def show_event(settings: Settings, ref: str) -> dict[str, Any]:
    """One event (by number or sender's event id) with the outcome of each rule and step.

    Raises :class:`EventNotFound`.
    """
    sessions = _sessions(settings)
    with sessions() as session:
        pk = _resolve(session, ref)
        event = session.get(Event, pk)
        assert event is not None
        data = _row(event)
        data["payload"] = event.payload
        data["rules"] = [
            {
                "rule": r.rule_id,
                "matched": r.matched,
                "outcome": r.outcome,
                "detail": r.detail,
                "shadow": r.shadow,
            }
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
                **_shadow_output(s),
            }
            for s in session.scalars(select(StepRun).where(StepRun.event_pk == pk))
        ]
    data["waits"] = [w.as_dict() for w in wait_store.list_waits(sessions, states=None, event_pk=pk)]
    data["cancelled_waits"] = [w.as_dict() for w in wait_store.cancelled_by_event(sessions, pk)]
    return data


def _shadow_output(step: StepRun) -> dict[str, Any]:
    """What a shadow step would have sent (and why its `if` was taken as true), if it is one."""
    if step.status != "shadow" or not isinstance(step.output, dict):
        return {}
    return {"would_send": step.output.get("would_send") or [], "note": step.output.get("note")}


def describe_event(data: dict[str, Any]) -> str:
    """A readable report of :func:`show_event`'s data."""
    lines = [
        f"event {data['pk']} ({data['event_id']}): {data['event_type']} from {data['source']}"
        + (" (reconciled: no webhook of this change was seen)" if data.get("reconciled") else "")
        + f", request {data['request_id'] or '-'}",
        f"  status {data['status']} after {data['attempts']} tries, "
        f"rule set {data['ruleset_version'] or '-'}",
    ]
    if data["identity"]:
        lines.append(f"  identity: {data['identity']}")
    if data["error"]:
        lines.append(f"  error: {data['error']}")
    live = [rule for rule in data["rules"] if not rule.get("shadow")]
    shadow = [rule for rule in data["rules"] if rule.get("shadow")]
    lines.extend(_rule_lines(live, data["steps"]))
    if shadow:
        lines.append("  shadow rules (mode: shadow; nothing was called):")
        lines.extend(_rule_lines(shadow, data["steps"]))
    for wait in data.get("waits", ()):
        why = f" — {wait['cancelled_by']}" if wait["cancelled_by"] else ""
        lines.append(
            f"  wait {wait['id']} (rule {wait['rule_id']}, step {wait['step_id']}): "
            f"{wait['state']}, due {wait['due_at']}{why}"
        )
    for wait in data.get("cancelled_waits", ()):
        lines.append(
            f"  cancelled wait {wait['id']} of event {wait['event_pk']} (rule {wait['rule_id']})"
        )
    return "\n".join(lines)


def _rule_lines(rules: list[dict[str, Any]], steps: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for rule in rules:
        lines.append(
            f"  rule {rule['rule']}: {rule['outcome']}"
            + (f" — {rule['detail']}" if rule["detail"] else "")
        )
        for step in steps:
            if step["rule"] != rule["rule"]:
                continue
            head = f"    step {step['step']} ({step['uses']}): "
            if step["status"] != "shadow":
                error = f" — {step['error']}" if step["error"] else ""
                lines.append(f"{head}{step['status']}{error}")
                continue
            sent = step.get("would_send") or []
            if not sent:
                lines.append(f"{head}shadow — would have sent nothing")
            for index, request in enumerate(sent):
                lead = head if index == 0 else " " * len(head)
                lines.append(
                    f"{lead}shadow — would have sent: {request['method']} {request['url']}"
                )
                if request.get("body") is not None:
                    lines.append(f"      body: {_shown(request['body'])}")
            if step.get("note"):
                lines.append(f"      note: {step['note']}")
    return lines


def _shown(body: Any, limit: int = 600) -> str:
    """A recorded body on one line, cut at ``limit`` characters."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def replay_events(settings: Settings, refs: Iterable[str]) -> list[str]:
    """Queue events (by number or sender's event id) again; one line per event on what happened."""
    from deskwire.compose import event_queue
    from worker.enqueue import EnqueueError

    sessions = _sessions(settings)
    queue = event_queue(settings)
    lines = []
    for ref in refs:
        try:
            with sessions() as session:
                pk = _resolve(session, ref)
        except EventNotFound as exc:
            lines.append(f"{ref}: not replayed ({exc})")
            continue
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


COLUMNS = (
    ("pk", "ID"),
    ("status", "STATUS"),
    ("event_id", "EVENT ID"),
    ("event_type", "TYPE"),
    ("request_id", "REQUEST"),
    ("received_at", "RECEIVED (UTC)"),
    ("error", "ERROR / REASON"),
)


def _cell(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if key == "error" and row["status"] == "duplicate":
        value = row.get("identity")  # why it repeats an earlier event
    if value is None or value == "":
        return "-"
    if key == "received_at":
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return " ".join(str(value).split())  # one line: newlines and runs of spaces folded


def format_event_table(rows: list[dict[str, Any]], width: int = 120) -> str:
    """``events list`` as a table with a header row.

    Columns are as wide as their longest value (nothing is cut); the error, last, wraps
    at spaces into the width left, continuing under itself, and never breaks a word.
    """
    if not rows:
        return "no events"
    cells = [[_cell(row, key) for key, _ in COLUMNS] for row in rows]
    headers = [title for _, title in COLUMNS]
    widths = [max(len(headers[i]), *(len(line[i]) for line in cells)) for i in range(6)]
    indent = sum(widths) + 2 * len(widths)
    room = max(30, width - indent)

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=False))

    out = [line(headers[:6]) + "  " + headers[6]]
    for values in cells:
        parts = textwrap.wrap(values[6], room, break_long_words=False, break_on_hyphens=False) or [
            "-"
        ]
        out.append(line(values[:6]) + "  " + parts[0])
        out.extend(" " * indent + part for part in parts[1:])
    return "\n".join(out)
