"""The event state machine on a real database: claims, the sweeper's guarded take, replay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from deskwire import event_store
from deskwire.database import make_engine, session_factory, transaction
from deskwire.tables import Event, EventStatus, utcnow


@pytest.fixture
def sessions(database_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def store(sessions, event_id: str = "e", request_id: str | None = "1") -> int:  # type: ignore[no-untyped-def]
    return event_store.accept_event(
        sessions, source="sdp", event_id=event_id, event_type="request.created",
        request_id=request_id, payload={}, dedupe_window=60,
    ).pk  # fmt: skip


def windows(now=None):  # type: ignore[no-untyped-def]
    now = now or utcnow()
    return {
        "older_than": now - timedelta(seconds=5),
        "stale_before": now - timedelta(seconds=60),
        "lost_before": now - timedelta(hours=2),
    }


def age(sessions, pk: int, **values) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        session.execute(update(Event).where(Event.id == pk).values(**values))


def test_one_claim_at_a_time_and_the_same_delivery_may_take_over(sessions) -> None:  # type: ignore[no-untyped-def]
    pk = store(sessions)
    assert event_store.claim(sessions, pk, claimer="a", stale_after=60)
    assert not event_store.claim(sessions, pk, claimer="b", stale_after=60)
    assert event_store.claim(sessions, pk, claimer="a", stale_after=60)  # redelivered after a crash
    age(sessions, pk, started_at=utcnow() - timedelta(seconds=120))
    assert event_store.claim(sessions, pk, claimer="b", stale_after=60)  # the claim went stale


def test_an_earlier_unfinished_event_about_the_request_blocks_the_claim(sessions) -> None:  # type: ignore[no-untyped-def]
    first, second = store(sessions, "e1"), store(sessions, "e2")
    other = store(sessions, "e3", request_id="2")
    assert not event_store.claim(sessions, second, claimer="x", stale_after=60)
    assert event_store.claim(sessions, other, claimer="y", stale_after=60)
    event_store.finish(sessions, first, EventStatus.DONE)
    assert event_store.claim(sessions, second, claimer="x", stale_after=60)


def test_sweeper_take_skips_an_event_that_was_claimed_meanwhile(sessions) -> None:  # type: ignore[no-untyped-def]
    pk = store(sessions)
    age(sessions, pk, received_at=utcnow() - timedelta(seconds=30))
    assert event_store.needing_dispatch(sessions, **windows()) == [pk]
    event_store.claim(sessions, pk, claimer="t1", stale_after=60)  # a delivery got there first
    assert event_store.take_for_dispatch(sessions, pk, **windows()) is None


def test_sweeper_takes_an_undispatched_event_once(sessions) -> None:  # type: ignore[no-untyped-def]
    pk = store(sessions)
    age(sessions, pk, received_at=utcnow() - timedelta(seconds=30))
    assert event_store.take_for_dispatch(sessions, pk, **windows()) == ("request.created", "1")
    assert event_store.take_for_dispatch(sessions, pk, **windows()) is None
    event_store.clear_dispatched(sessions, pk)  # the send failed: it is stranded again
    assert event_store.take_for_dispatch(sessions, pk, **windows()) is not None


def test_sweeper_takes_a_stale_running_event_back_to_queued(sessions) -> None:  # type: ignore[no-untyped-def]
    pk = store(sessions)
    event_store.mark_dispatched(sessions, pk)
    event_store.claim(sessions, pk, claimer="dead", stale_after=60)
    assert event_store.take_for_dispatch(sessions, pk, **windows()) is None  # still fresh
    age(sessions, pk, started_at=utcnow() - timedelta(seconds=120))
    assert event_store.take_for_dispatch(sessions, pk, **windows()) is not None
    with sessions() as session:
        assert session.get(Event, pk).status == EventStatus.QUEUED


def test_replay_only_finished_events_and_it_resets_the_tries(sessions) -> None:  # type: ignore[no-untyped-def]
    pk = store(sessions)
    assert not event_store.replay(sessions, pk)  # still queued
    event_store.claim(sessions, pk, claimer="a", stale_after=60)
    event_store.finish(sessions, pk, EventStatus.FAILED, error="boom")
    assert event_store.replay(sessions, pk)
    with sessions() as session:
        event = session.get(Event, pk)
        assert (event.status, event.attempts, event.error) == ("queued", 0, None)
