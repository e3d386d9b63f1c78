"""Database statements and transactions per event in the worker (real database, real SDP fake).

One typical event (``request.created`` with the sender's id, a body with the fields the
rule reads, one rule that matches and adds a note) goes through the Celery task's body
in this process, against a fake SDP over loopback. Every statement the worker sends and
every commit is counted: each is a round trip to PostgreSQL and CPU in SQLAlchemy, and the
worker's database time is a third of its time per event (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, event, select

from deskwire import event_store
from deskwire.compose import build_runtime
from deskwire.tables import Event, RequestState, RuleRun, StepRun
from tests.integration import deployment
from worker.history import Journal
from worker.processing import Runtime, process_event
from worker.tasks import settle

RULES = """\
rules:
  - id: note-each-new-request
    on: request.created
    actions:
      - uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Seen by deskwire: {{ request.subject }}"
"""


@dataclass
class Counted:
    """What the database saw: statements in order, commits, and connections reset on
    their return to the pool (a rollback: a round trip on PostgreSQL)."""

    statements: list[str] = field(default_factory=list)
    commits: int = 0
    resets: int = 0


@contextmanager
def counting() -> Iterator[Counted]:
    """Count on every engine (SQLite's unsynced commits go through a twin engine)."""
    counted = Counted()

    def statement(_conn: Any, _cursor: Any, text: str, *_: Any) -> None:
        counted.statements.append(" ".join(text.split()))

    def commit(_conn: Any) -> None:
        counted.commits += 1

    def reset(*_: Any) -> None:
        counted.resets += 1

    listeners = [(Engine, "before_cursor_execute", statement), (Engine, "commit", commit)]
    listeners.append((_pool_class(), "reset", reset))
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield counted
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


def _pool_class() -> type:
    from sqlalchemy.pool import Pool

    return Pool


def run_task_body(runtime: Runtime, pk: int) -> str:
    """What the Celery task does with one delivery (worker/tasks.py), in this process."""
    claimer = f"delivery-{pk}"
    journal = Journal(runtime.sessions)
    with runtime.leases.kept(pk, claimer):
        outcome = process_event(runtime, pk, claimer=claimer, journal=journal)
    # The task object is used only to send a retry's message: none is sent here.
    return settle(None, runtime, pk, outcome, journal)  # type: ignore[arg-type]


def _store(runtime: Runtime, n: int) -> int:
    return event_store.accept_event(
        runtime.sessions,
        source="sdp",
        event_id=f"stmts-{n}",
        event_type="request.created",
        request_id=str(1000 + n),
        payload={"event": "request.created", "event_id": f"stmts-{n}",
                 "request": {"id": str(1000 + n), "subject": f"printer {n}"}},
        dedupe_window=3600,
    ).pk  # fmt: skip


def test_statements_per_typical_event(
    tmp_path: Path, database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=RULES, start_worker=False) as dep:
        for name in ("SDP_CLIENT_ID", "SDP_CLIENT_SECRET", "SDP_REFRESH_TOKEN"):
            monkeypatch.setenv(name, dep.env[name])
        settings = dep.settings.model_copy(
            update={"secret_key": [SecretStr(dep.env["DESKWIRE_SECRET_KEY"])]}
        )
        runtime = build_runtime(settings)
        # A first event warms up what a running worker has warm (token, pools, caches).
        assert run_task_body(runtime, _store(runtime, 0)) == "done"
        pk = _store(runtime, 1)
        with counting() as counted:
            assert run_task_body(runtime, pk) == "done"
        print(f"\n{len(counted.statements)} statements, {counted.commits} commits, "
              f"{counted.resets} resets ({dep.settings.database_url.split(':')[0]}):")  # fmt: skip
        for text in counted.statements:
            print("  ", text[:160])
        with runtime.sessions() as session:
            stored = session.get(Event, pk)
            assert stored is not None and stored.status == "done"
            assert stored.request_snapshot == {"id": "1001", "subject": "printer 1"}
            assert session.scalar(select(RuleRun.outcome).where(RuleRun.event_pk == pk)) == "done"
            assert session.scalar(select(StepRun.status).where(StepRun.event_pk == pk)) == (
                "succeeded"
            )
            assert session.scalar(
                select(RequestState.state).where(RequestState.request_id == "1001")
            ) == {"id": "1001", "subject": "printer 1"}
        runtime.sessions.kw["bind"].dispose()
