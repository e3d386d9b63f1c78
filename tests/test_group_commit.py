"""Ingest's transaction shape: group commit of concurrent webhooks and one publish per
group, batched dispatch marks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from deskwire import event_claim, event_store
from deskwire.database import engine_of, make_engine, session_factory, transaction
from deskwire.embedded import EmbeddedRedis
from deskwire.event_store import Accepted, NewEvent
from deskwire.settings import Settings
from deskwire.tables import DedupeKey, Event
from tests.waiting import wait_until
from webhooks.context import WebContext
from webhooks.dispatch_marks import DispatchMarks
from webhooks.group_commit import GroupCommit, Stored
from worker.enqueue import EnqueueError, Enqueuer


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def new(event_id: str) -> NewEvent:
    return NewEvent("sdp", event_id, "request.created", "1", {"n": event_id}, 60)


def count(sessions: sessionmaker[Session], table: type) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


class Published:
    """A publisher for GroupCommit that records each group's pks (thread-safe)."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self._lock = threading.Lock()

    def __call__(self, group: Sequence[tuple[NewEvent, Accepted]]) -> None:
        with self._lock:
            self.groups.append([accepted.pk for _, accepted in group])

    def pks(self) -> list[int]:
        with self._lock:
            return [pk for group in self.groups for pk in group]


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)


def test_concurrent_webhooks_share_commits_and_each_is_stored_before_it_returns(
    sessions: sessionmaker[Session],
) -> None:
    commits: list[int] = []
    engine = engine_of(sessions)
    event.listen(engine, "commit", lambda _conn: commits.append(1))

    def autocommitted(conn: Connection, *_: object) -> None:  # PostgreSQL's one-statement insert
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            commits.append(1)

    event.listen(engine, "after_cursor_execute", autocommitted)
    published = Published()
    group = GroupCommit(sessions, published)
    results: dict[str, event_store.Accepted] = {}
    stored_at_return: dict[str, bool] = {}
    published_at_return: dict[str, bool] = {}
    start = threading.Barrier(16)

    def request(index: int) -> None:
        start.wait(timeout=30)
        for n in range(10):
            event_id = f"t{index}-{n % 8}"  # repeats: the second of each id is a duplicate
            stored = group.accept(new(event_id))
            assert stored.publish_error is None
            accepted = stored.accepted
            results.setdefault(event_id, accepted)
            with sessions() as session:  # committed, visible to any other connection
                stored_at_return[event_id] = session.get(Event, accepted.pk) is not None
            if not accepted.duplicate:
                published_at_return[event_id] = accepted.pk in published.pks()

    run_threads(16, request)
    assert count(sessions, Event) == 16 * 8
    assert count(sessions, DedupeKey) == 16 * 8
    assert all(stored_at_return.values())
    assert len({accepted.pk for accepted in results.values()}) == 16 * 8
    assert 0 < len(commits) < 16 * 8  # some webhooks shared a commit
    # Each new event published once, before its request returned; duplicates not at all.
    assert sorted(published.pks()) == sorted(accepted.pk for accepted in results.values())
    assert len(published_at_return) == 16 * 8
    assert all(published_at_return.values())
    assert len(published.groups) < 16 * 8  # some groups published together


def test_the_next_group_commits_while_one_publishes(sessions: sessionmaker[Session]) -> None:
    release = threading.Event()
    calls: list[int] = []

    def publish(group: Sequence[tuple[NewEvent, Accepted]]) -> None:
        calls.append(len(group))
        if len(calls) == 1:  # the first group's publish is slow
            release.wait(timeout=30)

    group = GroupCommit(sessions, publish)
    first: list[event_store.Accepted] = []
    slow = threading.Thread(target=lambda: first.append(group.accept(new("slow")).accepted))
    slow.start()
    wait_until(lambda: calls == [1], 15, "the first group publishing")
    second = group.accept(new("meanwhile"))  # committed and published, the first still out
    assert not second.accepted.duplicate
    assert first == []
    release.set()
    slow.join(timeout=30)
    assert [accepted.event_id for accepted in first] == ["slow"]
    assert calls == [1, 1]


def test_a_failed_publish_leaves_every_event_of_the_group_stored_and_says_why(
    sessions: sessionmaker[Session],
) -> None:
    def publish(group: Sequence[tuple[NewEvent, Accepted]]) -> None:
        raise EnqueueError("broker unavailable: test")

    group = GroupCommit(sessions, publish)
    outcomes: dict[int, Stored] = {}
    start = threading.Barrier(8)

    def request(index: int) -> None:
        start.wait(timeout=30)
        outcomes[index] = group.accept(new(f"f{index}"))

    run_threads(8, request)
    assert count(sessions, Event) == 8
    assert all(isinstance(o.publish_error, EnqueueError) for o in outcomes.values())
    again = group.accept(new("f0"))  # a duplicate is not published: nothing to fail
    assert again.accepted.duplicate
    assert again.publish_error is None


def test_a_group_on_a_redis_that_is_down_is_stored_and_left_unmarked(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    url = server.url
    server.stop()  # a Redis that was there and is gone
    settings = Settings(broker_url=url)
    context = WebContext(settings, sessions, Enqueuer(settings, url))
    outcomes: dict[int, Stored] = {}
    start = threading.Barrier(8)

    def request(index: int) -> None:
        start.wait(timeout=30)
        stored = context.events.accept(new(f"d{index}"))
        outcomes[index] = stored
        if stored.publish_error is None:  # as ingest does
            context.dispatch_marks.add(stored.accepted.pk)

    started = time.monotonic()
    run_threads(8, request)
    assert time.monotonic() - started < 15  # each group gives up after its bounded retries
    assert all(isinstance(o.publish_error, EnqueueError) for o in outcomes.values())
    context.dispatch_marks.flush()
    with sessions() as session:
        stored = list(session.scalars(select(Event)))
    assert len(stored) == 8
    assert all(e.status == "queued" and e.dispatched_at is None for e in stored)  # for the sweeper


def test_a_duplicate_inside_one_batch_is_reported_as_such(
    sessions: sessionmaker[Session],
) -> None:
    first, second = event_store.accept_events(sessions, [new("same"), new("same")])
    assert (first.duplicate, second.duplicate) == (False, True)
    assert first.pk == second.pk
    assert count(sessions, Event) == 1


def test_a_batch_holding_an_id_stored_before_reports_only_that_one_as_duplicate(
    sessions: sessionmaker[Session],
) -> None:
    taken = event_store.accept_events(sessions, [new("taken")])[0]
    results = event_store.accept_events(sessions, [new("fresh"), new("taken"), new("other")])
    assert [r.duplicate for r in results] == [False, True, False]
    assert results[1].pk == taken.pk
    assert count(sessions, Event) == 3


def test_a_batch_is_stored_in_a_fixed_number_of_statements_on_postgresql_whatever_its_size(
    sessions: sessionmaker[Session],
) -> None:
    statements: list[str] = []
    engine = engine_of(sessions)

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    taken = event_store.accept_events(sessions, [new("before")])[0]
    for size in (3, 40):
        statements.clear()
        fresh = event_store.accept_events(sessions, [new(f"new{size}-{n}") for n in range(size)])
        assert [r.duplicate for r in fresh] == [False] * size
        if engine.dialect.name == "postgresql":  # new ids: one insert of both tables, no read
            assert len(statements) == 1, statements
        statements.clear()
        items = [new(f"s{size}-{n}") for n in range(size)]
        anonymous = NewEvent("sdp", None, "request.updated", "2", {"n": "none"}, 60)
        items += [new("before"), anonymous, new(f"s{size}-0")]
        results = event_store.accept_events(sessions, items)
        assert [r.duplicate for r in results] == [False] * size + [True, False, True]
        assert results[size].pk == taken.pk
        assert results[size + 2].pk == results[0].pk
        assert results[size + 1].event_id.startswith("auto-")
        if engine.dialect.name == "postgresql":  # each statement a round trip over the network
            # The insert (its key part fails: "before" is stored, so nothing is); then read
            # the keys and the insert.
            assert len(statements) == 3, statements
    with sessions() as session:
        stored = session.scalars(select(Event).where(Event.id.in_([r.pk for r in results])))
        by_pk = {e.id: e for e in stored}
    assert by_pk[results[0].pk].event_id == "s40-0"
    assert by_pk[results[41].pk].explicit_id is False
    assert [by_pk[r.pk].payload for r in results[:3]] == [{"n": f"s40-{n}"} for n in range(3)]
    assert count(sessions, DedupeKey) == 1 + 2 * (3 + 40)


def test_a_key_past_its_window_no_longer_blocks_its_id_alone_or_in_a_batch(
    sessions: sessionmaker[Session],
) -> None:
    old = [event_store.accept_events(sessions, [new(f"lapsed-{n}")])[0] for n in range(2)]
    with transaction(sessions) as session:
        session.execute(
            update(DedupeKey).values(expires_at=DedupeKey.expires_at - timedelta(hours=1))
        )
    again = event_store.accept_events(sessions, [new("lapsed-0")])[0]
    batch = event_store.accept_events(sessions, [new("lapsed-1"), new("lapsed-1"), new("x")])
    assert not again.duplicate
    assert again.pk != old[0].pk
    assert [r.duplicate for r in batch] == [False, True, False]
    assert batch[0].pk not in (old[1].pk, again.pk)
    assert batch[1].pk == batch[0].pk
    assert count(sessions, DedupeKey) == 3


def test_dispatch_marks_are_written_in_a_batch(sessions: sessionmaker[Session]) -> None:
    pks = [event_store.accept_events(sessions, [new(f"m{n}")])[0].pk for n in range(5)]
    marks = DispatchMarks(sessions, interval=0.05)
    for pk in pks:
        marks.add(pk)

    def marked() -> int | None:
        with sessions() as session:
            return session.scalar(
                select(func.count()).select_from(Event).where(Event.dispatched_at.is_not(None))
            )

    wait_until(lambda: marked() == len(pks), 15, lambda: f"all marked (now {marked()})")
    assert marked() == len(pks)


def test_a_late_mark_does_not_override_a_worker_that_took_the_event(
    sessions: sessionmaker[Session],
) -> None:
    pk = event_store.accept_events(sessions, [new("taken-by-worker")])[0].pk
    assert event_claim.claim(sessions, pk, claimer="task-1", lease=60)
    with transaction(sessions) as session:  # e.g. its requeue failed: "send it again"
        session.execute(update(Event).where(Event.id == pk).values(dispatched_at=None))
    event_store.mark_dispatched_many(sessions, [pk])
    with sessions() as session:
        row = session.get(Event, pk)
        assert row is not None
        assert row.dispatched_at is None  # the sweeper still sends it


def test_the_stored_rows_hold_every_field_and_the_connection_goes_back_transactional(
    sessions: sessionmaker[Session],
) -> None:
    """Every column of a batch lands as given (no request id, unicode, nested payloads, the
    reconciled flag), and the pooled connection the insert used (autocommit on PostgreSQL)
    is handed out again inside transactions: a rolled-back write leaves nothing."""
    payload = {"request": {"subject": "Ünïcode ✓ \x00 \\u0000", "tags": [1, 2.5, None, True]}}
    items = [
        NewEvent("sdp", None, "request.updated", None, payload, 60, reconciled=True),
        NewEvent("other-source", "same-id", "request.created", "7", {}, 60),
        NewEvent("sdp", "same-id", "request.created", None, {"n": 1}, 60),
    ]
    results = event_store.accept_events(sessions, items)
    assert [r.duplicate for r in results] == [False, False, False]  # the source is in the key
    with sessions() as session:
        rows = {e.id: e for e in session.scalars(select(Event))}
    first, second, third = (rows[r.pk] for r in results)
    assert (first.request_id, first.payload, first.reconciled, first.explicit_id) == (
        None, payload, True, False
    )  # fmt: skip
    assert (second.source, second.event_id, second.request_id) == ("other-source", "same-id", "7")
    assert (third.source, third.payload, third.status, third.attempts) == (
        "sdp",
        {"n": 1},
        "queued",
        0,
    )
    assert third.received_at is not None
    assert third.dispatched_at is None
    with sessions() as session, session.begin():
        session.execute(update(Event).values(event_type="changed"))
        session.rollback()
    with sessions() as session:
        assert set(session.scalars(select(Event.event_type))) == {
            "request.updated",
            "request.created",
        }
    assert count(sessions, DedupeKey) == 2
