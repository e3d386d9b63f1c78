"""The ``waits`` table's guarded changes on a real database: a wait fires once, only when due
and when its event has finished a run; cancels and fires never both win; a purge keeps
events whose rule still waits; deskwire's own echoes cancel nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from deskwire import wait_store
from deskwire.database import make_engine, session_factory, transaction
from deskwire.embedded import free_port
from deskwire.recovery_store import oldest_waiting_age
from deskwire.run_history import count_finished_before, purge_finished
from deskwire.settings import Settings
from deskwire.tables import Event, RuleRun, StepRun, Wait, utcnow
from rules import load_rules
from worker.celery_app import QUEUE, create_celery
from worker.sweeper import events_waiting_in_broker, fire_waits, sweep
from worker.waiting import cancel_by_newer_event


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = make_engine(database_url)
    yield made
    made.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def event(sessions: sessionmaker[Session], status: str = "done", request_id: str = "42") -> int:
    with transaction(sessions) as session:
        row = Event(
            event_id=f"e-{utcnow().timestamp()}-{request_id}-{status}",
            source="sdp",
            event_type="request.created",
            request_id=request_id,
            payload={},
            status=status,
            received_at=utcnow() - timedelta(days=400),
            finished_at=utcnow(),
            attempts=3,
        )
        session.add(row)
        session.flush()
        return row.id


def wait(
    sessions: sessionmaker[Session],
    event_pk: int,
    *,
    due_in: float = -1,
    rule_id: str = "r",
    request_id: str = "42",
) -> int:
    with transaction(sessions) as session:
        wait_store.add_wait(
            session, event_pk=event_pk, rule_id=rule_id, step_id="pause", step_index=1,
            source="sdp", request_id=request_id, due_at=utcnow() + timedelta(seconds=due_in),
        )  # fmt: skip
        session.add(RuleRun(event_pk=event_pk, rule_id=rule_id, matched=True, outcome="waiting"))
        session.add(
            StepRun(event_pk=event_pk, rule_id=rule_id, step_id="pause", uses="wait",
                    status="waiting")
        )  # fmt: skip
    with sessions() as session:
        found = session.scalar(select(Wait.id).where(Wait.event_pk == event_pk))
        assert found is not None
        return found


def state(sessions: sessionmaker[Session], wait_id: int) -> tuple[str, str | None]:
    found = wait_store.get(sessions, wait_id)
    assert found is not None
    return found.state, found.cancelled_by


def event_row(sessions: sessionmaker[Session], pk: int) -> Any:
    with sessions() as session:
        row = session.get(Event, pk)
        assert row is not None
        session.expunge(row)
        return row


def test_a_due_wait_fires_once_and_queues_its_event_again(sessions) -> None:
    pk = event(sessions)
    due = wait(sessions, pk)
    not_due = wait(sessions, event(sessions, request_id="43"), due_in=3600, request_id="43")
    fired = wait_store.fire_due(sessions)
    assert [(f.wait_id, f.event_pk, f.event_type) for f in fired] == [(due, pk, "request.created")]
    assert state(sessions, due) == ("fired", None)
    assert state(sessions, not_due) == ("waiting", None)
    reopened = event_row(sessions, pk)
    assert (reopened.status, reopened.attempts, reopened.finished_at) == ("queued", 0, None)
    assert reopened.dispatched_at is not None
    # Received 400 days ago, due since the firing: the queue is not "stuck" for health.
    assert oldest_waiting_age(sessions) < 60
    assert wait_store.fire_due(sessions) == []  # fired is final


def test_a_wait_whose_event_is_running_fires_after_that_run(sessions) -> None:
    pk = event(sessions, status="running")
    wait_id = wait(sessions, pk)
    assert wait_store.fire_due(sessions) == []
    assert state(sessions, wait_id) == ("waiting", None)
    with transaction(sessions) as session:
        row = session.get(Event, pk)
        assert row is not None
        row.status = "done"
    assert [f.wait_id for f in wait_store.fire_due(sessions)] == [wait_id]


def test_two_sweepers_at_once_fire_a_wait_once(sessions) -> None:
    waits = [
        wait(sessions, event(sessions, request_id=str(n)), request_id=str(n)) for n in range(8)
    ]
    results: list[list[wait_store.Fired]] = []
    barrier = threading.Barrier(4)

    def sweep() -> None:
        barrier.wait(timeout=30)
        results.append(wait_store.fire_due(sessions))

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    fired = sorted(f.wait_id for batch in results for f in batch)
    assert fired == sorted(waits)


def test_cancel_and_fire_never_both_win(sessions) -> None:
    pk = event(sessions)
    wait_id = wait(sessions, pk)
    assert wait_store.cancel(sessions, wait_id, by="deskwire waits cancel") == "cancelled"
    assert wait_store.fire_due(sessions) == []
    assert wait_store.cancel(sessions, wait_id, by="again") == "not_waiting"
    assert wait_store.cancel(sessions, 999_999, by="x") == "missing"
    assert state(sessions, wait_id) == ("cancelled", "deskwire waits cancel")
    with sessions() as session:
        rule = session.scalar(select(RuleRun).where(RuleRun.event_pk == pk))
        step = session.scalar(select(StepRun).where(StepRun.event_pk == pk))
        assert rule is not None
        assert step is not None
        assert (rule.outcome, step.status) == ("cancelled", "cancelled")
        assert "cancelled by deskwire waits cancel" in (rule.detail or "")
    fired_first = wait(sessions, event(sessions, request_id="7"), request_id="7")
    assert len(wait_store.fire_due(sessions)) == 1
    assert wait_store.cancel(sessions, fired_first, by="late") == "not_waiting"


def test_a_newer_event_cancels_only_earlier_waits_of_its_request_and_rules(sessions) -> None:
    older = event(sessions)
    mine = wait(sessions, older, due_in=3600)
    other_rule = wait(sessions, event(sessions), due_in=3600, rule_id="other")
    other_request = wait(sessions, event(sessions, request_id="9"), due_in=3600, request_id="9")
    newer = event(sessions)
    later = wait(sessions, event(sessions), due_in=3600)  # made by an event after `newer`
    cancelled = wait_store.cancel_for_event(
        sessions, event_pk=newer, event_type="request.updated", source="sdp",
        request_id="42", rule_ids=["r"],
    )  # fmt: skip
    assert cancelled == [mine]
    assert state(sessions, mine) == ("cancelled", f"event {newer} (request.updated)")
    for untouched in (other_rule, other_request, later):
        assert state(sessions, untouched)[0] == "waiting"
    assert [w.id for w in wait_store.cancelled_by_event(sessions, newer)] == [mine]


def test_a_purge_keeps_events_whose_rule_still_waits(sessions) -> None:
    waiting = event(sessions)
    wait(sessions, waiting, due_in=3600)
    ended = event(sessions)
    ended_wait = wait(sessions, ended, due_in=3600)
    wait_store.cancel(sessions, ended_wait, by="x")
    cutoff = utcnow() - timedelta(days=1)
    assert count_finished_before(sessions, cutoff) == 1
    assert purge_finished(sessions, older_than=cutoff) == 1
    assert event_row(sessions, waiting).status == "done"
    assert wait_store.get(sessions, ended_wait) is None
    assert [w.event_pk for w in wait_store.list_waits(sessions)] == [waiting]


def test_an_echo_of_deskwires_own_write_cancels_nothing(sessions, tmp_path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yml").write_text(
        "rules:\n  - id: r\n    on: request.created\n    cancel_waits_on: 'request.*'\n"
        "    actions:\n      - {uses: wait, with: {duration: 1h}}\n"
    )
    rule_set = load_rules(folder)
    wait_id = wait(sessions, event(sessions), due_in=3600)
    newer = event_row(sessions, event(sessions))
    newer.event_type = "request.updated"
    assert cancel_by_newer_event(sessions, newer, rule_set, own=True) == []
    assert state(sessions, wait_id) == ("waiting", None)
    newer.event_type = "request.closed"  # matches the glob `request.*`
    assert cancel_by_newer_event(sessions, newer, rule_set, own=False) == [wait_id]
    assert state(sessions, wait_id) == ("cancelled", f"event {newer.id} (request.closed)")


def test_fired_waits_the_broker_refused_are_sent_by_a_later_sweep(
    sessions, database_url: str, redis_url: str
) -> None:
    first = event(sessions, request_id="1")
    second = event(sessions, request_id="2")
    for pk, request_id in ((first, "1"), (second, "2")):
        wait(sessions, pk, request_id=request_id)
    settings = Settings(database_url=database_url, broker_url=redis_url)
    down = create_celery(settings, f"redis://127.0.0.1:{free_port()}/0")
    assert fire_waits(down, sessions) == 0
    for pk in (first, second):
        row = event_row(sessions, pk)
        assert (row.status, row.dispatched_at) == ("queued", None)  # never sent
    assert [w.state for w in wait_store.list_waits(sessions, states=None)] == ["fired"] * 2
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(QUEUE)
        assert sweep(create_celery(settings, redis_url), sessions, settings, client) == 2
        assert events_waiting_in_broker(client) == {first, second}
        client.delete(QUEUE)
    finally:
        client.close()
