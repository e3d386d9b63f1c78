"""The database engine and the declarative base every table of deskwire shares.

SQLite is the embedded default; PostgreSQL is supported and tested. Tables from other
packages (``connections``) subclass :class:`Base` too. Tables are created and changed only
by the migrations (:mod:`deskwire.schema`), never from these models at start-up.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
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

        if sqlite_synchronous == "full":
            _UNSYNCED_TWINS[engine] = (url, kwargs, None)
        return engine
    engine = create_engine(url, **kwargs)
    _ping_when_idle(engine)
    return engine


PING_AFTER = 1.0  # seconds a pooled connection may sit idle and be handed out unchecked


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only if it sat idle longer than
    :data:`PING_AFTER` (a database restart or a dropped idle connection shows there).

    ``pool_pre_ping`` pinged at every checkout: one more round trip per transaction, a
    quarter of ingest's on PostgreSQL. A connection in steady use is checked by its last
    statement; if the server goes away meanwhile, the statement fails, SQLAlchemy
    invalidates the pool and the next checkouts reconnect (as before for a connection
    that dies between the ping and the statement)."""

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["deskwire_used"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _back(_dbapi_connection: Any, record: Any) -> None:
        record.info["deskwire_used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("deskwire_used", 0.0) <= PING_AFTER:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and hands out a new one.
            raise exc.DisconnectionError(type(error).__name__) from error


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


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for a read of one statement: on PostgreSQL in autocommit, so the
    statement is sent alone, where BEGIN before it and a ROLLBACK when the connection went
    back to the pool made three round trips of one (a single statement sees one snapshot
    either way). SQLite starts no transaction for a read anyway."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


# SQLite engines with synchronous=FULL → how to build their synchronous=NORMAL twin (and the
# twin once built), for begin(synced=False).
_UNSYNCED_TWINS: weakref.WeakKeyDictionary[Engine, tuple[str, dict[str, Any], Engine | None]] = (
    weakref.WeakKeyDictionary()
)
_TWIN_LOCK = threading.Lock()


@contextmanager
def begin(engine: Engine, *, synced: bool = True) -> Iterator[Connection]:
    """``engine.begin()``; with ``synced=False`` the commit does not wait for the disk.

    For a transaction whose loss in a power cut or an OS crash costs nothing (the worker's
    claim of an event, made before any effect of the run): it is visible to every other
    connection at once like any commit, and the next synced commit to the same database
    makes it durable too, because both databases write their log in order and a sync
    covers everything before it. A process crash loses nothing either way (the commit is
    in the operating system's hands). On PostgreSQL the transaction turns
    ``synchronous_commit`` off for itself; SQLite can only change its level between
    transactions, so these commits go through a twin engine of ``synchronous=NORMAL``
    connections to the same file.
    """
    if synced:
        with engine.begin() as connection:
            yield connection
        return
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield connection
        return
    with _unsynced_twin(engine).begin() as connection:
        yield connection


def _unsynced_twin(engine: Engine) -> Engine:
    """The synchronous=NORMAL twin of a SQLite engine (the engine itself if it has none)."""
    with _TWIN_LOCK:
        found = _UNSYNCED_TWINS.get(engine)
        if found is None:
            return engine  # synchronous=normal already, or not SQLite
        url, kwargs, twin = found
        if twin is None:
            twin = make_engine(url, sqlite_synchronous="normal", **kwargs)
            _UNSYNCED_TWINS[engine] = (url, kwargs, twin)
        return twin
