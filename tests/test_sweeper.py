"""The sweeper on a real database and a real Redis queue (no worker consumes here): it
re-sends what is lost and leaves a message that still waits in the queue alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from deskwire import event_store
from deskwire.database import make_engine, session_factory, transaction
from deskwire.settings import Settings
from deskwire.tables import Event, utcnow
from worker.celery_app import QUEUE, create_celery
from worker.enqueue import send_process_event
from worker.sweeper import events_waiting_in_broker, sweep


@pytest.fixture
def parts(database_url: str, redis_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(database_url)
    settings = Settings(database_url=database_url, broker_url=redis_url)
    client = redis.Redis.from_url(redis_url)
    yield session_factory(engine), create_celery(settings, redis_url), settings, client
    client.close()
    engine.dispose()


def store(sessions, event_id: str, request_id: str) -> int:  # type: ignore[no-untyped-def]
    return event_store.accept_event(
        sessions, source="sdp", event_id=event_id, event_type="request.created",
        request_id=request_id, payload={}, dedupe_window=60,
    ).pk  # fmt: skip


def overdue(sessions, pk: int) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        session.execute(
            update(Event)
            .where(Event.id == pk)
            .values(dispatched_at=utcnow() - timedelta(minutes=5))
        )


def test_an_overdue_event_is_resent_only_when_its_message_is_gone(parts) -> None:  # type: ignore[no-untyped-def]
    sessions, app, settings, client = parts
    waiting, lost = store(sessions, "w", "1"), store(sessions, "l", "2")
    for pk in (waiting, lost):
        send_process_event(app, pk, event_type="request.created", request_id=str(pk))
        event_store.mark_dispatched(sessions, pk)
    assert events_waiting_in_broker(client) == {waiting, lost}
    # Redis lost one message (a restart without persistence, a dead worker holding it).
    client.delete(QUEUE)
    send_process_event(app, waiting, event_type="request.created", request_id="1")
    overdue(sessions, waiting)
    overdue(sessions, lost)
    assert sweep(app, sessions, settings, client) == 1  # the backlog is left alone
    assert events_waiting_in_broker(client) == {waiting, lost}
    assert client.llen(QUEUE) == 2
    assert sweep(app, sessions, settings, client) == 0  # just re-sent: not overdue again


def test_an_event_never_sent_is_sent_and_foreign_messages_are_ignored(parts) -> None:  # type: ignore[no-untyped-def]
    sessions, app, settings, client = parts
    client.lpush(QUEUE, b"not json", b'{"headers": {"id": "someone-else"}}')
    pk = store(sessions, "n", "3")
    with transaction(sessions) as session:
        session.execute(
            update(Event).where(Event.id == pk).values(received_at=utcnow() - timedelta(minutes=1))
        )
    assert events_waiting_in_broker(client) == set()
    assert sweep(app, sessions, settings, client) == 1
    assert events_waiting_in_broker(client) == {pk}
