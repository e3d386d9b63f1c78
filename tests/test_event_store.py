"""The event state machine on a real database: claims, the sweeper's guarded take, replay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from deskwire import event_claim, event_store, recovery_store
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


def age(sessions, pk: int, **values) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        session.execute(update(Event).where(Event.id == pk).values(**values))


def ago(seconds: float):  # type: ignore[no-untyped-def]
    return utcnow() - timedelta(seconds=seconds)


GRACE = 10.0


def test_one_claim_at_a_time_until_the_lease_lapses(sessions) -> None:  # type: ignore[no-untyped-def]
    pk = store(sessions)
    assert event_claim.claim(sessions, pk, claimer="a", lease=30)
    assert not event_claim.claim(sessions, pk, claimer="b", lease=30)
    assert not event_claim.claim(sessions, pk, claimer="a", lease=30)  # not even the same one
    assert recovery_store.renew_lease(sessions, pk, claimer="a", lease=30)
    assert not recovery_store.renew_lease(sessions, pk, claimer="b", lease=30)
    age(sessions, pk, lease_until=ago(1))  # a's worker died and stopped renewing
    assert event_claim.claim(sessions, pk, claimer="b", lease=30)
    assert not recovery_store.renew_lease(sessions, pk, claimer="a", lease=30)


def test_an_earlier_unfinished_event_about_the_request_blocks_the_claim(sessions) -> None:  # type: ignore[no-untyped-def]
    first, second = store(sessions, "e1"), store(sessions, "e2")
    other = store(sessions, "e3", request_id="2")
    assert not event_claim.claim(sessions, second, claimer="x", lease=30)
    assert event_claim.claim(sessions, other, claimer="y", lease=30)
    event_store.finish(sessions, first, EventStatus.DONE)
    assert event_claim.claim(sessions, second, claimer="x", lease=30)


def test_a_claim_commits_with_the_writes_of_its_transaction_or_rolls_them_back(sessions) -> None:  # type: ignore[no-untyped-def]
    first, second = store(sessions, "c1"), store(sessions, "c2")
    found = event_claim.claimable(sessions, first)
    assert found is not None
    assert (found.event.id, found.event.status, found.request_state) == (first, "queued", None)
    assert event_claim.claimable(sessions, second) is None  # blocked by the earlier event
    with transaction(sessions) as session:  # the worker's first journal flush
        event_claim.claim_in(session, first, claimer="a", lease=30)
        session.execute(update(Event).where(Event.id == first).values(identity="frozen"))
    assert event_claim.claimable(sessions, first) is None  # running, leased

    def another_delivery() -> None:
        with transaction(sessions) as session:
            session.execute(update(Event).where(Event.id == first).values(identity="lost"))
            event_claim.claim_in(session, first, claimer="b", lease=30)

    with pytest.raises(event_claim.NotClaimed):
        another_delivery()
    with sessions() as session:
        stored = session.get(Event, first)
        assert stored is not None
        assert (stored.claimed_by, stored.identity, stored.attempts) == ("a", "frozen", 1)


def test_sweeper_take_skips_an_event_that_was_claimed_meanwhile(sessions) -> None:  # type: ignore[no-untyped-def]
    pk = store(sessions)
    age(sessions, pk, received_at=ago(30))
    window = recovery_store.windows(GRACE)
    assert recovery_store.stranded(sessions, window) == [(pk, "never_sent")]
    event_claim.claim(sessions, pk, claimer="t1", lease=30)  # a delivery got there first
    assert recovery_store.take_for_dispatch(sessions, pk, window) is None


def test_sweeper_takes_an_undispatched_event_once(sessions) -> None:  # type: ignore[no-untyped-def]
    pk = store(sessions)
    age(sessions, pk, received_at=ago(30))
    window = recovery_store.windows(GRACE)
    assert recovery_store.take_for_dispatch(sessions, pk, window) == ("request.created", "1")
    assert recovery_store.take_for_dispatch(sessions, pk, window) is None
    recovery_store.clear_dispatched(sessions, pk)  # the send failed: it is stranded again
    assert recovery_store.take_for_dispatch(sessions, pk, window) is not None


def test_a_queued_event_sent_and_due_long_ago_is_overdue(sessions) -> None:  # type: ignore[no-untyped-def]
    pk = store(sessions)
    event_store.mark_dispatched(sessions, pk)
    assert recovery_store.stranded(sessions, recovery_store.windows(GRACE)) == []
    age(sessions, pk, dispatched_at=ago(GRACE + 1))
    window = recovery_store.windows(GRACE)
    assert recovery_store.stranded(sessions, window) == [(pk, "overdue")]
    assert recovery_store.take_for_dispatch(sessions, pk, window) is not None
    assert recovery_store.stranded(sessions, recovery_store.windows(GRACE)) == []


def test_a_retry_waiting_out_its_backoff_is_not_overdue_until_it_is_due(sessions) -> None:  # type: ignore[no-untyped-def]
    pk = store(sessions)
    event_claim.claim(sessions, pk, claimer="a", lease=30)
    event_store.finish(
        sessions, pk, EventStatus.QUEUED, error="503", not_before=utcnow() + timedelta(seconds=60)
    )
    age(sessions, pk, dispatched_at=ago(600))  # sent long ago, but due only in a minute
    assert recovery_store.stranded(sessions, recovery_store.windows(GRACE)) == []
    assert recovery_store.oldest_waiting_age(sessions) == 0.0  # waiting out a backoff is fine
    age(sessions, pk, not_before=ago(GRACE + 1))  # due, and its worker died holding it
    assert recovery_store.stranded(sessions, recovery_store.windows(GRACE)) == [(pk, "overdue")]
    assert GRACE < recovery_store.oldest_waiting_age(sessions) < GRACE + 30


def test_sweeper_takes_a_running_event_whose_lease_lapsed_back_to_queued(sessions) -> None:  # type: ignore[no-untyped-def]
    pk = store(sessions)
    event_store.mark_dispatched(sessions, pk)
    event_claim.claim(sessions, pk, claimer="dead", lease=30)
    window = recovery_store.windows(GRACE)
    assert recovery_store.take_for_dispatch(sessions, pk, window) is None  # still leased
    age(sessions, pk, lease_until=ago(1))
    window = recovery_store.windows(GRACE)
    assert recovery_store.stranded(sessions, window) == [(pk, "lapsed")]
    assert recovery_store.take_for_dispatch(sessions, pk, window) is not None
    with sessions() as session:
        assert session.get(Event, pk).status == EventStatus.QUEUED


def test_oldest_waiting_age_counts_queued_events_only(sessions) -> None:  # type: ignore[no-untyped-def]
    assert recovery_store.oldest_waiting_age(sessions) == 0.0
    old, new = store(sessions, "o", request_id="1"), store(sessions, "n", request_id="2")
    age(sessions, old, received_at=ago(100))
    age(sessions, new, received_at=ago(10))
    assert 99 < recovery_store.oldest_waiting_age(sessions) < 130
    event_claim.claim(sessions, old, claimer="a", lease=30)
    assert 9 < recovery_store.oldest_waiting_age(sessions) < 40


def test_replay_only_finished_events_and_it_resets_the_tries(sessions) -> None:  # type: ignore[no-untyped-def]
    pk = store(sessions)
    assert not event_store.replay(sessions, pk)  # still queued
    event_claim.claim(sessions, pk, claimer="a", lease=30)
    event_store.finish(sessions, pk, EventStatus.FAILED, error="boom")
    assert event_store.replay(sessions, pk)
    with sessions() as session:
        event = session.get(Event, pk)
        assert (event.status, event.attempts, event.error) == ("queued", 0, None)
