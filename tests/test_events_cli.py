"""``deskwire events``: the table, either id, and the broker recorded by ``serve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from deskwire.broker_file import (
    broker_file,
    forget_broker_url,
    record_broker_url,
    recorded_broker_url,
)
from deskwire.cli import cli
from deskwire.database import make_engine, session_factory
from deskwire.event_views import format_event_table
from deskwire.tables import Event

RECEIVED = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)


def _row(pk: int, error: str | None = None, **extra: object) -> dict:
    return {
        "pk": pk,
        "status": "failed" if error else "done",
        "event_id": f"evt-{pk}",
        "event_type": "request.updated",
        "request_id": "42",
        "received_at": RECEIVED,
        "error": error,
        **extra,
    }


def test_the_table_has_a_header_and_wraps_errors_at_spaces_only() -> None:
    error = (
        "the step note (sdp.add_note) failed: SDP answered 400 with status_code 4012: "
        "the field 'udf_fields.udf_pick_901' is mandatory-for-closure https://example.com/"
        "a/really/long/url/that/cannot/be/broken/anywhere"
    )
    table = format_event_table([_row(1, error), _row(22)], width=100)
    lines = table.splitlines()
    assert lines[0].split() == [
        "ID", "STATUS", "EVENT", "ID", "TYPE", "REQUEST", "RECEIVED", "(UTC)", "ERROR", "/",
        "REASON",
    ]  # fmt: skip
    words_in_table = " ".join(line.strip() for line in lines[1:]).split()
    for word in error.split():
        assert word in words_in_table  # every word whole: nothing cut or broken
    error_column = lines[0].index("ERROR")
    continuation = [line for line in lines[1:] if not line[:error_column].strip()]
    assert continuation  # it did wrap
    assert all(line[error_column] != " " for line in continuation)  # under the column
    assert lines[-1].startswith("22")
    assert lines[-1].rstrip().endswith("-")


def test_long_values_widen_their_column_instead_of_being_cut() -> None:
    table = format_event_table([_row(1, event_id="x" * 60), _row(2)], width=80)
    assert "x" * 60 in table
    assert format_event_table([], width=80) == "no events"


def test_a_multi_line_error_stays_in_its_column() -> None:
    table = format_event_table([_row(1, "first line\nsecond line")], width=200)
    assert len(table.splitlines()) == 2
    assert "first line second line" in table


def test_a_recorded_broker_is_used_while_its_serve_lives(tmp_path: Path) -> None:
    assert recorded_broker_url(tmp_path) is None
    record_broker_url(tmp_path, "redis://127.0.0.1:1234/0")
    assert recorded_broker_url(tmp_path) == "redis://127.0.0.1:1234/0"
    forget_broker_url(tmp_path)
    assert not broker_file(tmp_path).exists()


def test_a_stale_or_broken_record_is_ignored(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    broker_file(tmp_path).write_text(
        json.dumps({"url": "redis://127.0.0.1:1/0", "pid": int(gone.stdout)})
    )
    assert recorded_broker_url(tmp_path) is None  # its serve is gone (kill -9, a crash)
    for text in ("", "not json", "[]", '{"url": 5, "pid": 1}', '{"url": "redis://x"}'):
        broker_file(tmp_path).write_text(text)
        assert recorded_broker_url(tmp_path) is None


def test_forget_leaves_another_serves_record_alone(tmp_path: Path) -> None:
    broker_file(tmp_path).write_text(json.dumps({"url": "redis://x:1/0", "pid": 1}))
    forget_broker_url(tmp_path)
    assert broker_file(tmp_path).exists()


def test_without_a_broker_or_a_serve_replay_says_what_to_do(
    tmp_path: Path, database_url: str
) -> None:
    _store(database_url, "evt-1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKWIRE_")}
    env |= {"DESKWIRE_DATABASE_URL": database_url, "DESKWIRE_VAR_DIR": str(tmp_path / "var")}
    result = CliRunner().invoke(cli, ["events", "replay", "evt-1"], env=env)
    assert result.exit_code == 2
    assert "no `deskwire serve` is running with the var folder" in result.output


def _store(url: str, event_id: str, source: str = "sdp") -> int:
    engine = make_engine(url)
    try:
        return _insert(engine, event_id, source)
    finally:
        engine.dispose()  # no connection left open on the test's schema


def _insert(engine: Engine, event_id: str, source: str) -> int:
    with session_factory(engine)() as session, session.begin():
        event = Event(
            event_id=event_id,
            source=source,
            event_type="request.created",
            request_id="42",
            payload={},
            status="failed",
        )
        session.add(event)
        session.flush()
        return event.id


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {"DESKWIRE_DATABASE_URL": database_url, "DESKWIRE_VAR_DIR": str(tmp_path / "var")}


def test_show_by_the_senders_event_id_or_the_number(env: dict[str, str]) -> None:
    pk = _store(env["DESKWIRE_DATABASE_URL"], "SDP-777")
    runner = CliRunner()
    by_id = runner.invoke(cli, ["events", "show", "SDP-777", "--json"], env=env)
    by_number = runner.invoke(cli, ["events", "show", str(pk), "--json"], env=env)
    assert by_id.exit_code == 0, by_id.output
    assert json.loads(by_id.stdout) == json.loads(by_number.stdout)
    assert json.loads(by_id.stdout)["event_id"] == "SDP-777"


def test_an_event_id_that_names_several_events_lists_their_numbers(env: dict[str, str]) -> None:
    first = _store(env["DESKWIRE_DATABASE_URL"], "again", source="sdp")
    second = _store(env["DESKWIRE_DATABASE_URL"], "again", source="eu")
    result = CliRunner().invoke(cli, ["events", "show", "again"], env=env)
    assert result.exit_code == 1
    assert f"{second} (source eu" in result.output
    assert f"{first} (source sdp" in result.output
    assert "give the number" in result.output


def test_a_number_that_is_no_events_number_is_tried_as_an_event_id(env: dict[str, str]) -> None:
    pk = _store(env["DESKWIRE_DATABASE_URL"], "98765")
    result = CliRunner().invoke(cli, ["events", "show", "98765", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pk"] == pk


def test_list_prints_the_table(env: dict[str, str]) -> None:
    _store(env["DESKWIRE_DATABASE_URL"], "evt-a")
    result = CliRunner().invoke(cli, ["events", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("ID")
    assert "evt-a" in result.stdout
