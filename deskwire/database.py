"""The database engine and the declarative base every table of deskwire shares.

SQLite is the embedded default; PostgreSQL is supported and tested. Tables from other
packages (``connections``) subclass :class:`Base` too. Tables are created and changed only
by the migrations (:mod:`deskwire.schema`), never from these models at start-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    """Declarative base of all deskwire tables."""


def make_engine(url: str, *, sqlite_synchronous: str = "full", **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and enforced foreign keys.

    Creating an engine creates nothing on disk (``deskwire db upgrade`` does that).
    ``sqlite_synchronous``: ``full`` syncs the WAL to disk at every commit (an accepted
    event survives a power cut); ``normal`` leaves that to checkpoints, which is much
    faster on a slow disk but can lose the last commits on a power cut or OS crash.
    """
    if sqlite_synchronous not in ("full", "normal"):
        raise ValueError(f"sqlite_synchronous must be full or normal, not {sqlite_synchronous!r}")
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous.upper()}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session maker that keeps loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def engine_of(sessions: sessionmaker[Session]) -> Engine:
    """The engine a session maker of :func:`session_factory` is bound to (for Core paths)."""
    engine = sessions.kw["bind"]
    assert isinstance(engine, Engine)
    return engine


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session inside one transaction: committed on success, rolled back on error."""
    with sessions() as session, session.begin():
        yield session
