"""Commits that do not wait for the disk: the worker's claim (real SQLite and PostgreSQL).

What is checked is the setting each transaction runs under (a disk sync cannot be seen from
a test) and that such a commit is at once visible to every other connection.
"""

from __future__ import annotations

from functools import partial

from sqlalchemy import Connection, select, text

from deskwire.database import begin, make_engine, session_factory
from deskwire.tables import Event, utcnow
from worker.history import Journal


def _sync_level(connection: Connection) -> str:
    """The level this transaction commits under: SQLite's ``synchronous`` (2 = FULL,
    1 = NORMAL) or PostgreSQL's ``synchronous_commit``."""
    if connection.dialect.name == "sqlite":
        return {1: "normal", 2: "full"}[connection.exec_driver_sql("PRAGMA synchronous").scalar()]
    return (
        "full"
        if connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        else "normal"
    )


def _event(n: int) -> dict[str, object]:
    return {
        "event_id": f"e{n}", "source": "sdp", "event_type": "request.created",
        "payload": {}, "status": "queued", "received_at": utcnow(),
    }  # fmt: skip


def test_an_unsynced_commit_is_visible_at_once_and_later_commits_are_synced_again(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        with begin(engine, synced=False) as connection:
            assert _sync_level(connection) == "normal"
            connection.execute(Event.__table__.insert(), _event(1))
        with engine.connect() as other:  # another pooled connection sees it
            assert other.scalar(select(Event.event_id)) == "e1"
        for _ in range(3):  # the pool's connections were not left unsynced
            with begin(engine) as connection:
                assert _sync_level(connection) == "full"
            with engine.begin() as connection:
                assert _sync_level(connection) == "full"
    finally:
        engine.dispose()


def test_an_engine_already_unsynced_stays_so(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        return  # sqlite_synchronous is SQLite's setting
    engine = make_engine(database_url, sqlite_synchronous="normal")
    try:
        for synced in (True, False):
            with begin(engine, synced=synced) as connection:
                assert _sync_level(connection) == "normal"
    finally:
        engine.dispose()


def test_a_runs_first_flush_is_unsynced_and_every_later_one_synced(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    levels: list[str] = []

    def write(connection: Connection, n: int) -> None:
        levels.append(_sync_level(connection))
        connection.execute(Event.__table__.insert(), _event(n))

    try:
        journal = Journal(sessions)
        journal.flush()  # nothing queued: no transaction, and it does not count
        for n in range(3):
            journal.add(partial(write, n=n))
            journal.flush()
        assert levels == ["normal", "full", "full"]
        assert journal.flushes == 3
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM events")) == 3
    finally:
        engine.dispose()
