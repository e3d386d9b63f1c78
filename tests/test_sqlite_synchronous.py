"""SQLite durability setting: every commit synced unless an operator trades that away."""

from __future__ import annotations

from pathlib import Path

from deskwire.database import make_engine


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
