"""Webhooks and reconciled events of one change run once, on a real database, in any order
and under races (the worker's decision, without the worker around it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from deskwire import event_store
from deskwire.change_claims import Change, claim_change, claimed_already
from deskwire.database import make_engine, session_factory
from deskwire.tables import Event
from worker.request_state import Identity, decide_identity

LUT = "1700000000000"


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def store(
    sessions: sessionmaker[Session], *, reconciled: bool, event_type: str = "request.updated"
) -> Event:
    payload: dict[str, Any] = (
        {"request": {"id": "4001", "last_updated_time": {"value": LUT}}}
        if reconciled
        else {"id": "4001"}
    )
    item = event_store.NewEvent("sdp", None, event_type, "4001", payload, 60, reconciled=reconciled)
    pk = event_store.accept_events(sessions, [item])[0].pk
    with sessions() as session:
        event = session.get(Event, pk)
        assert event is not None
        session.expunge(event)
        return event


def decide(sessions: sessionmaker[Session], event: Event) -> Identity:
    return decide_identity(
        sessions, event, request_id="4001", last_updated_time=LUT, origin="SDP", window=60
    )


def test_a_reconciled_change_whose_webhook_ran_is_a_duplicate(
    sessions: sessionmaker[Session],
) -> None:
    webhook, reconciled = store(sessions, reconciled=False), store(sessions, reconciled=True)
    assert decide(sessions, webhook).duplicate_of is None
    second = decide(sessions, reconciled)
    assert second.duplicate_of is not None
    assert second.duplicate_of.pk == webhook.id
    assert "reconciled, but that event already stood for the change" in second.note
    assert claimed_already(sessions, "sdp", [("4001", LUT), ("4001", "1")]) == {("4001", LUT)}


def test_a_webhook_after_its_reconciled_change_is_a_duplicate_of_the_same_type_only(
    sessions: sessionmaker[Session],
) -> None:
    reconciled = store(sessions, reconciled=True)
    first = decide(sessions, reconciled)
    assert first.duplicate_of is None
    assert first.note.startswith("reconciled: SDP listed request 4001")
    late = decide(sessions, store(sessions, reconciled=False))
    assert late.duplicate_of is not None
    assert late.duplicate_of.pk == reconciled.id
    assert "this webhook came after reconciliation ran the same change" in late.note
    # A webhook of another type: the rules of its type never ran for this change.
    other = store(sessions, reconciled=False, event_type="request.closed")
    assert decide(sessions, other).duplicate_of is None
    # A decision repeated after a crash keeps the event's own claim.
    assert decide(sessions, reconciled).duplicate_of is None


def test_a_reconciled_event_never_runs_after_another_reconciled_one(
    sessions: sessionmaker[Session],
) -> None:
    first, second = store(sessions, reconciled=True), store(sessions, reconciled=True)
    assert decide(sessions, first).duplicate_of is None
    assert decide(sessions, second).duplicate_of is not None


@pytest.mark.parametrize("round_", range(3))
def test_of_a_webhook_and_a_reconciled_event_racing_exactly_one_runs(
    sessions: sessionmaker[Session], round_: int
) -> None:
    events = [store(sessions, reconciled=False), store(sessions, reconciled=True)]
    if round_ % 2:
        events.reverse()
    outcomes: dict[int, bool] = {}
    start = threading.Barrier(2, timeout=10)

    def run(event: Event) -> None:
        start.wait()
        outcomes[event.id] = decide(sessions, event).duplicate_of is None

    threads = [threading.Thread(target=run, args=(e,)) for e in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes.values()) == [False, True]


def test_a_claim_names_its_holder_and_kind(sessions: sessionmaker[Session]) -> None:
    event = store(sessions, reconciled=True)
    change = Change("sdp", "4001", LUT)
    assert claim_change(sessions, change, event_pk=event.id, event_type="request.updated",
                        reconciled=True, window=60) is None  # fmt: skip
    holder = claim_change(sessions, change, event_pk=event.id + 1000,
                          event_type="request.updated", reconciled=False, window=60)  # fmt: skip
    assert holder is not None
    assert (holder.pk, holder.reconciled, holder.event_type) == (event.id, True, "request.updated")
