"""Processes that start together (web, worker) create the schema without tripping up."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from sqlalchemy import inspect

from deskwire.database import create_schema, make_engine


def _create(url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    import connections.store  # noqa: F401 - every table, as the real processes have
    import deskwire.tables  # noqa: F401

    engine = make_engine(url)
    barrier.wait()
    create_schema(engine)


def test_concurrent_schema_creation_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/race{round_}.db"
        barrier = context.Barrier(3)
        processes = [context.Process(target=_create, args=(url, barrier)) for _ in range(3)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=60)
        assert [p.exitcode for p in processes] == [0, 0, 0]
        assert "events" in inspect(make_engine(url)).get_table_names()


def test_sqlite_syncs_every_commit_unless_told_otherwise(tmp_path: Path) -> None:
    import pytest
    from pydantic import ValidationError
    from sqlalchemy import text

    from deskwire.settings import Settings

    assert Settings().sqlite_synchronous == "full"  # durable before the 202, by default
    for setting, level in (("full", 2), ("normal", 1)):
        engine = make_engine(f"sqlite:///{tmp_path}/{setting}.db", sqlite_synchronous=setting)
        with engine.connect() as conn:
            assert conn.scalar(text("PRAGMA synchronous")) == level
        engine.dispose()
    with pytest.raises(ValidationError, match="sqlite_synchronous"):
        Settings(sqlite_synchronous="off")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="full or normal"):
        make_engine(f"sqlite:///{tmp_path}/x.db", sqlite_synchronous="off")
