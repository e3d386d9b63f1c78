"""The duplicate decision's claim of a request state, on a real database, under races."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from deskwire import event_store
from deskwire.database import make_engine, session_factory, transaction
from deskwire.schema import upgrade
from deskwire.state_claims import Holder, RequestState, claim_state
from deskwire.tables import StateClaim, utcnow

STATE = RequestState("sdp", "request.updated", "4001", "1700000000000", "d" * 64)


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def store(sessions: sessionmaker[Session]) -> int:
    return event_store.accept_event(
        sessions, source="sdp", event_id=None, event_type="request.updated",
        request_id="4001", payload={"request": {"id": "4001"}}, dedupe_window=60,
    ).pk  # fmt: skip


def test_events_without_a_sender_id_get_ids_of_their_own(
    sessions: sessionmaker[Session],
) -> None:
    first, second = store(sessions), store(sessions)
    assert first != second
    with sessions() as session:
        ids = {e.event_id for e in session.scalars(select(event_store.Event))}
    assert len(ids) == 2
    assert all(i.startswith("auto-") for i in ids)


def test_the_first_event_holds_a_state_and_a_repeat_names_it(
    sessions: sessionmaker[Session],
) -> None:
    first, second = store(sessions), store(sessions)
    assert claim_state(sessions, STATE, first, window=60) is None
    assert claim_state(sessions, STATE, first, window=60) is None  # its own claim: idempotent
    holder = claim_state(sessions, STATE, second, window=60)
    assert isinstance(holder, Holder)
    assert holder.pk == first
    assert holder.event_id.startswith("auto-")


@pytest.mark.parametrize(
    "other",
    [
        RequestState("sdp", "request.updated", "4001", "1700000000001", "d" * 64),  # changed
        RequestState("sdp", "request.updated", "4001", "1700000000000", "e" * 64),  # other body
        RequestState("sdp", "request.created", "4001", "1700000000000", "d" * 64),  # other type
        RequestState("sdp2", "request.updated", "4001", "1700000000000", "d" * 64),  # other src
        RequestState("sdp", "request.updated", "4002", "1700000000000", "d" * 64),  # other req
    ],
)
def test_any_difference_is_a_new_state(
    sessions: sessionmaker[Session], other: RequestState
) -> None:
    first, second = store(sessions), store(sessions)
    assert claim_state(sessions, STATE, first, window=60) is None
    assert claim_state(sessions, other, second, window=60) is None


def test_a_claim_past_the_window_no_longer_holds(sessions: sessionmaker[Session]) -> None:
    first, second = store(sessions), store(sessions)
    claim_state(sessions, STATE, first, window=60)
    with transaction(sessions) as session:
        session.execute(update(StateClaim).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert claim_state(sessions, STATE, second, window=60) is None
    assert event_store.purge_expired_keys(sessions) == 0  # the expired claim was replaced


def test_racing_claims_of_one_state_leave_exactly_one_holder(
    sessions: sessionmaker[Session],
) -> None:
    pks = [store(sessions) for _ in range(8)]
    start = threading.Barrier(len(pks))
    results: dict[int, Holder | None] = {}
    errors: list[BaseException] = []

    def claim(pk: int) -> None:
        try:
            start.wait(timeout=30)
            results[pk] = claim_state(sessions, STATE, pk, window=60)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(pk,)) for pk in pks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    winners = [pk for pk, holder in results.items() if holder is None]
    assert len(winners) == 1
    assert {holder.pk for holder in results.values() if holder is not None} == set(winners)
    with sessions() as session:
        assert session.scalars(select(StateClaim.event_pk)).all() == winners
