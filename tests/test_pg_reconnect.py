"""A PostgreSQL restart under steady ingest: pooled connections the server dropped.

Connections in steady use are not pinged before each transaction (``deskwire.database``):
the first statement on a dropped one fails and SQLAlchemy invalidates the pool. Ingest
stores the events once more on a new connection, so the webhook is still accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from deskwire import event_store
from deskwire.database import make_engine, session_factory
from deskwire.event_store import NewEvent
from deskwire.tables import Event
from tests.conftest import PG_URL, _empty_database, _normalise_pg, _upgraded

pytestmark = pytest.mark.skipif(not PG_URL, reason="DESKWIRE_TEST_DATABASE_URL is not set")


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    for url in _empty_database("postgresql", tmp_path):
        yield _upgraded(url)


def _new(event_id: str) -> NewEvent:
    return NewEvent("sdp", event_id, "request.created", "1", {"id": event_id}, 3600)


def test_ingest_stores_the_event_when_the_server_dropped_its_pooled_connections(
    pg_url: str,
) -> None:
    engine = make_engine(pg_url, pool_size=2)
    sessions = session_factory(engine)
    try:
        assert not event_store.accept_events(sessions, [_new("before")])[0].duplicate
        schema = pg_url.rsplit("application_name=", 1)[1]
        admin = create_engine(_normalise_pg(PG_URL))
        with admin.begin() as conn:  # what a database restart does to every session
            ended = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = :name AND pid <> pg_backend_pid()"
                ),
                {"name": schema},
            ).scalar()
        admin.dispose()
        assert (ended or 0) >= 1  # the pooled connection of the first webhook
        accepted = event_store.accept_events(sessions, [_new("after")])[0]
        assert not accepted.duplicate
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Event)) == 2
    finally:
        engine.dispose()
