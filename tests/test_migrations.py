"""The schema comes from the migrations: baseline, upgrades that keep rows, checks, CLI."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine, MetaData, inspect, select, text

import connections.store  # noqa: F401 - every table, as the migrations' env has
from connections.store import ConnectionToken
from deskwire.cli import cli
from deskwire.database import Base, make_engine, session_factory
from deskwire.embedded import free_port
from deskwire.schema import (
    BASELINE,
    SchemaError,
    head_revision,
    require_current,
    schema_state,
    upgrade,
)
from deskwire.tables import Event, RuleRun, StepRun
from tests.integration import ROOT


def test_the_migrations_have_one_head() -> None:
    # Two engineers adding a revision on the same parent make two heads: chain yours
    # onto main's head instead (docs/development.md, "Adding a column").
    assert head_revision()


def test_upgraded_database_matches_the_tables_in_the_code(database_url: str) -> None:
    """A column added to a model without a migration (or the reverse) fails here."""
    engine = make_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert differences == []


def _add_rows(engine: Engine) -> None:
    """Rows written through the tables as the database has them (not as the code has them)."""
    now = datetime.now(UTC)
    tables = MetaData()
    tables.reflect(engine, only=["events", "rule_runs", "step_runs", "connection_tokens"])
    events, rule_runs, step_runs, tokens = (
        tables.tables[name] for name in ("events", "rule_runs", "step_runs", "connection_tokens")
    )
    with engine.begin() as connection:
        pk = connection.execute(
            events.insert().values(
                event_id="before-upgrade", source="sdp", event_type="request.created",
                request_id="42", payload={"request": {"id": "42"}}, status="failed",
                attempts=3, error="SDP said no", received_at=now,
            )
        ).inserted_primary_key[0]  # fmt: skip
        connection.execute(
            rule_runs.insert().values(
                event_pk=pk, rule_id="r", matched=True, outcome="failed", finished_at=now
            )
        )
        connection.execute(
            step_runs.insert().values(
                event_pk=pk, rule_id="r", step_id="s", uses="log", status="failed",
                attempts=1, finished_at=now,
            )
        )  # fmt: skip
        connection.execute(
            tokens.insert().values(
                link_name="sdp", user_key="", status="connected", service="sdp", auth="oauth2",
                scopes=[], secret="ciphertext", meta={}, version=0, updated_at=now,
            )
        )  # fmt: skip


def _assert_rows_kept(engine: Engine) -> None:
    with session_factory(engine)() as session:
        event = session.scalar(select(Event).where(Event.event_id == "before-upgrade"))
        assert event is not None
        assert (event.status, event.error, event.payload) == (
            "failed",
            "SDP said no",
            {"request": {"id": "42"}},
        )
        assert session.scalar(select(RuleRun.outcome).where(RuleRun.event_pk == event.id))
        assert session.scalar(select(StepRun.step_id).where(StepRun.event_pk == event.id))
        assert session.scalar(select(ConnectionToken.secret)) == "ciphertext"


def test_upgrade_keeps_the_rows_of_a_database_made_by_the_previous_schema(
    empty_database_url: str,
) -> None:
    engine = make_engine(empty_database_url)
    assert upgrade(engine, BASELINE) == (None, BASELINE)
    _add_rows(engine)
    before, after = upgrade(engine)
    assert (before, after) == (BASELINE, head_revision())
    _assert_rows_kept(engine)
    with session_factory(engine)() as session:
        event = session.scalar(select(Event).where(Event.event_id == "before-upgrade"))
        assert event is not None
        assert event.explicit_id is True  # 0002: ids of older events were checked at ingest
        assert event.identity is None
    require_current(engine)
    engine.dispose()


@pytest.mark.parametrize("made_at", [BASELINE, "head"])
def test_a_database_from_before_migrations_is_adopted_and_keeps_its_rows(
    empty_database_url: str, made_at: str
) -> None:
    """Installs made by create_all have tables but no version: stamp the baseline, upgrade.

    ``head``: made by a create_all that already had later columns (between a schema change
    and the migrations); the revisions leave what exists alone.
    """
    engine = make_engine(empty_database_url)
    upgrade(engine, made_at)
    _add_rows(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    state = schema_state(engine)
    assert state.current is None
    assert "created before deskwire had migrations" in (state.problem() or "")
    with pytest.raises(SchemaError, match="deskwire db upgrade"):
        require_current(engine)
    assert upgrade(engine) == (None, head_revision())
    _assert_rows_kept(engine)
    engine.dispose()


def test_an_empty_database_is_refused_with_what_to_run(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    with engine.connect():
        pass  # the database exists (SQLite: an empty file), without tables
    with pytest.raises(SchemaError, match=r"no deskwire tables yet: run `deskwire db upgrade`"):
        require_current(engine)
    engine.dispose()


def test_a_missing_sqlite_file_is_reported_not_created(tmp_path: Path) -> None:
    path = tmp_path / "var" / "deskwire.db"
    engine = make_engine(f"sqlite:///{path}")
    with pytest.raises(SchemaError, match="there is no database at"):
        require_current(engine)
    assert not path.exists()
    assert not path.parent.exists()


def test_a_revision_from_a_newer_deskwire_is_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    with pytest.raises(SchemaError, match="does not know"):
        require_current(engine)
    with pytest.raises(SchemaError, match="does not know"):
        upgrade(engine)
    engine.dispose()


def _upgrade_at_once(url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    engine = make_engine(url)
    barrier.wait()
    upgrade(engine)


def test_upgrades_started_at_once_take_turns(empty_database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    processes = [
        context.Process(target=_upgrade_at_once, args=(empty_database_url, barrier))
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    engine = make_engine(empty_database_url)
    assert schema_state(engine).up_to_date
    assert "events" in inspect(engine).get_table_names()
    engine.dispose()


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKWIRE_")}
    return env | {"DESKWIRE_DATABASE_URL": url, "DESKWIRE_VAR_DIR": str(tmp_path / "var")}


def test_db_upgrade_and_current_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state/deskwire.db"
    runner = CliRunner()
    env = _env(tmp_path, url)
    current = runner.invoke(cli, ["db", "current"], env=env)
    assert current.exit_code == 1
    assert "deskwire db upgrade" in current.output
    assert not (tmp_path / "state").exists()
    first = runner.invoke(cli, ["db", "upgrade"], env=env)
    assert first.exit_code == 0, first.output
    assert f"upgraded the schema from revision (none) to {head_revision()}" in first.stdout
    assert f"{tmp_path}/state/deskwire.db" in first.stderr  # which database it used
    again = runner.invoke(cli, ["db", "upgrade"], env=env)
    assert "the schema is current" in again.stdout
    current = runner.invoke(cli, ["db", "current"], env=env)
    assert current.exit_code == 0
    assert f"revision {head_revision()}" in current.stdout


@pytest.mark.parametrize("command", [["web", "--port", str(free_port())], ["worker"]])
def test_web_and_worker_refuse_a_database_that_is_not_upgraded(
    tmp_path: Path, empty_database_url: str, redis_url: str, command: list[str]
) -> None:
    engine = make_engine(empty_database_url)
    upgrade(engine, BASELINE)
    with engine.begin() as connection:  # an install from before migrations
        connection.execute(text("DROP TABLE alembic_version"))
    engine.dispose()
    env = _env(tmp_path, empty_database_url) | {"DESKWIRE_BROKER_URL": redis_url}
    result = subprocess.run(
        [sys.executable, "-m", "deskwire", *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 1, result.stderr
    assert "run `deskwire db upgrade`" in result.stderr
    assert "Traceback" not in result.stderr
