"""Database statements and transactions per event in the worker (real database, real SDP fake).

Events go through the Celery task's body in this process, against a fake SDP over loopback.
Every statement the worker sends and every commit is counted: each is a round trip to
PostgreSQL and CPU in SQLAlchemy, and the database was a third of the worker's time per
event (docs/performance.md). The bound pinned here makes a regression show.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, event, select, text
from sqlalchemy.pool import Pool

from deskwire import event_store
from deskwire.compose import build_runtime
from deskwire.database import make_engine, reading
from deskwire.tables import Event, RequestState, RuleRun, StepRun
from tests.fakes.sdp import FakeSdp
from tests.integration import Deployment, deployment
from worker.history import Journal
from worker.processing import Runtime, process_event
from worker.tasks import settle

RULES = """\
rules:
  - id: note-each-new-request
    on: [request.created, request.updated]
    actions:
      - uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Seen by deskwire: {{ request.subject }}"
"""

# One typical event: request.created with the sender's id, a body holding the fields the
# rule reads, one rule that matches and adds a note. Its statements, in order:
#   1. the claimable read: the event, with its request's saved state (LEFT JOIN)
#   -- first transaction (before the note is sent; its commit does not wait for the disk)
#   +. PostgreSQL only: SET LOCAL synchronous_commit TO OFF
#   2. the claim: UPDATE events (status, lease; with the frozen inputs and identity)
#   3. the request's state: INSERT … ON CONFLICT DO UPDATE request_states
#   4. the rule's verdict: INSERT … ON CONFLICT DO UPDATE rule_runs ("running")
#   -- the SDP call
#   5. the SDP connection's credentials (TokenStore.load when the client is handed out; the
#      request right after it uses that read: connections/current_credentials.py)
#   -- last transaction (the final status)
#   6. the step's result: INSERT … ON CONFLICT DO UPDATE step_runs
#   7. the rule's outcome: INSERT … ON CONFLICT DO UPDATE rule_runs ("done")
#   8. the status: UPDATE events
# It was 12 (13 on PostgreSQL): the request state was read before the claim and again
# before it was saved, the frozen inputs were an UPDATE of their own, and the credentials
# were read again by the request.
STATEMENTS = {"sqlite": 8, "postgresql": 9}
COMMITS = 2


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

    listeners = [
        (Engine, "before_cursor_execute", statement),
        (Engine, "commit", commit),
        (Pool, "reset", reset),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield counted
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


def run_task_body(runtime: Runtime, pk: int) -> str:
    """What the Celery task does with one delivery (worker/tasks.py), in this process."""
    claimer = f"delivery-{pk}"
    journal = Journal(runtime.sessions)
    with runtime.leases.kept(pk, claimer):
        outcome = process_event(runtime, pk, claimer=claimer, journal=journal)
    # The task object is used only to send a retry's message: none is sent here.
    return settle(None, runtime, pk, outcome, journal)  # type: ignore[arg-type]


@dataclass
class Worker:
    """The runtime of a worker process, in this one, and the deployment it works for."""

    runtime: Runtime
    deployment: Deployment
    events: int = 0

    def store(self, request: dict[str, Any], event_type: str = "request.created") -> int:
        self.events += 1
        event_id = f"stmts-{self.events}"
        return event_store.accept_event(
            self.runtime.sessions,
            source="sdp",
            event_id=event_id,
            event_type=event_type,
            request_id=request["id"],
            payload={"event": event_type, "event_id": event_id, "request": request},
            dedupe_window=3600,
        ).pk

    def event(self, pk: int) -> Event:
        with self.runtime.sessions() as session:
            found = session.get(Event, pk)
            assert found is not None
            return found

    def saved_state(self, request_id: str) -> Any:
        with self.runtime.sessions() as session:
            return session.scalar(
                select(RequestState.state).where(RequestState.request_id == request_id)
            )


@pytest.fixture
def worker(
    tmp_path: Path, database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Worker]:
    fake = FakeSdp()
    with deployment(
        tmp_path, database_url, redis_url, rules=RULES, start_worker=False, fake=fake
    ) as dep:
        for name in ("SDP_CLIENT_ID", "SDP_CLIENT_SECRET", "SDP_REFRESH_TOKEN"):
            monkeypatch.setenv(name, dep.env[name])
        settings = dep.settings.model_copy(
            update={"secret_key": [SecretStr(dep.env["DESKWIRE_SECRET_KEY"])]}
        )
        runtime = build_runtime(settings)
        try:
            yield Worker(runtime, dep)
        finally:
            runtime.sessions.kw["bind"].dispose()


def test_a_typical_event_costs_eight_statements_and_two_commits(worker: Worker) -> None:
    # A first event warms up what a running worker has warm (its SDP token, pools, caches).
    assert run_task_body(worker.runtime, worker.store({"id": "1000", "subject": "a"})) == "done"
    pk = worker.store({"id": "1001", "subject": "printer"})
    with counting() as counted:
        assert run_task_body(worker.runtime, pk) == "done"
    dialect = worker.runtime.sessions.kw["bind"].dialect.name
    listing = "\n".join(text[:150] for text in counted.statements)
    print(f"\n{dialect}: {len(counted.statements)} statements, {counted.commits} commits, "
          f"{counted.resets} pool resets\n{listing}")  # fmt: skip
    assert len(counted.statements) <= STATEMENTS[dialect], listing
    assert counted.commits == COMMITS
    stored = worker.event(pk)
    assert (stored.status, stored.claimed_by, stored.attempts) == ("done", f"delivery-{pk}", 1)
    assert stored.request_snapshot == {"id": "1001", "subject": "printer"}
    assert stored.previous_snapshot is None
    assert stored.caused_by_deskwire is False
    assert stored.identity == "event id from the sender: repeats inside the dedupe window are " \
        "refused at ingest"  # fmt: skip
    with worker.runtime.sessions() as session:
        assert session.scalar(select(RuleRun.outcome).where(RuleRun.event_pk == pk)) == "done"
        assert session.scalar(select(StepRun.status).where(StepRun.event_pk == pk)) == "succeeded"
    assert worker.saved_state("1001") == {"id": "1001", "subject": "printer"}
    assert len(worker.deployment.fake.notes) == 2


def test_the_state_read_with_the_event_is_its_previous_and_what_it_is_merged_over(
    worker: Worker,
) -> None:
    first = worker.store({"id": "7", "subject": "printer", "priority": {"name": "Low"}})
    assert run_task_body(worker.runtime, first) == "done"
    # A person changes the subject; the webhook carries only what the rule reads.
    second = worker.store({"id": "7", "subject": "printer on fire"}, "request.updated")
    assert run_task_body(worker.runtime, second) == "done"
    stored = worker.event(second)
    assert stored.previous_snapshot == {"id": "7", "subject": "printer",
                                        "priority": {"name": "Low"}}  # fmt: skip
    assert stored.request_snapshot == {"id": "7", "subject": "printer on fire"}
    assert worker.saved_state("7") == {"id": "7", "subject": "printer on fire",
                                       "priority": {"name": "Low"}}  # fmt: skip


def test_inputs_decided_after_the_claim_are_stored_by_a_write_of_their_own(
    worker: Worker,
) -> None:
    # The body has only the id: the request is read from SDP, and the claim is committed
    # before that call, so the frozen inputs cannot ride in it.
    assert run_task_body(worker.runtime, worker.store({"id": "500", "subject": "a"})) == "done"
    worker.deployment.fake.requests["501"] = {"id": "501", "subject": "from SDP"}
    pk = worker.store({"id": "501"})
    with counting() as counted:
        assert run_task_body(worker.runtime, pk) == "done"
    assert counted.commits == 3  # the claim, the verdict before the note, the final status
    stored = worker.event(pk)
    assert stored.request_snapshot is not None
    assert stored.request_snapshot["subject"] == "from SDP"
    assert stored.identity is not None
    assert worker.saved_state("501")["subject"] == "from SDP"


def test_a_read_is_one_round_trip_on_postgresql(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        return  # SQLite starts no transaction for a read
    engine = make_engine(database_url)
    sent = tmp_path / "libpq-trace"
    try:
        with sent.open("w") as trace:
            with reading(engine) as connection:
                pgconn = connection.connection.dbapi_connection.pgconn  # type: ignore[union-attr]
                pgconn.trace(trace.fileno())
                assert connection.execute(text("SELECT 1")).scalar() == 1
            pgconn.untrace()  # after the connection went back to the pool (no ROLLBACK)
        # What the client sent (libpq's trace: time, F/B, length, message type, contents).
        lines = [line.split("\t") for line in sent.read_text().splitlines()]
        queries = [x[4].strip() for x in lines if x[1] == "F" and x[3] in ("Query", "Parse")]
        assert queries == ['"SELECT 1"']  # no BEGIN before it, no ROLLBACK after it
    finally:
        engine.dispose()
