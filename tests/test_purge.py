"""Retention: `deskwire purge --older-than AGE` and the workers' periodic purge
(DESKWIRE_PURGE_AFTER), on a real database; queued and running events are never touched."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from deskwire.cli import cli
from deskwire.database import make_engine, session_factory, transaction
from deskwire.tables import DedupeKey, Event, RuleRun, StepRun, utcnow
from tests.integration import deployment
from tests.waiting import wait_until


def _env(tmp_path: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKWIRE_")}
    return env | {"DESKWIRE_DATABASE_URL": database_url, "DESKWIRE_VAR_DIR": str(tmp_path)}


def _store(database_url: str) -> dict[str, int]:
    """Events of every status, 40 days old and 1 day old, each with run history."""
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    pks: dict[str, int] = {}
    with transaction(sessions) as session:
        for age in (40, 1):
            for status in ("done", "failed", "duplicate", "queued", "running"):
                received = utcnow() - timedelta(days=age)
                event = Event(
                    event_id=f"{status}-{age}d", source="sdp", event_type="request.created",
                    request_id=f"{age}{len(pks)}", payload={}, status=status,
                    received_at=received, dispatched_at=received,
                )  # fmt: skip
                session.add(event)
                session.flush()
                pks[event.event_id] = event.id
                session.add(RuleRun(event_pk=event.id, rule_id="r", matched=True, outcome="done"))
                session.add(
                    StepRun(
                        event_pk=event.id, rule_id="r", step_id="s", uses="log", status="succeeded"
                    )
                )
                session.add(DedupeKey(key=f"k-{event.id}", event_pk=event.id, expires_at=utcnow()))
    return pks


def _left(database_url: str) -> tuple[set[str], int, int]:
    engine = make_engine(database_url)
    with session_factory(engine)() as session:
        ids = set(session.scalars(select(Event.event_id)))
        rules = int(session.scalar(select(func.count()).select_from(RuleRun)) or 0)
        steps = int(session.scalar(select(func.count()).select_from(StepRun)) or 0)
    engine.dispose()
    return ids, rules, steps


KEPT = {
    "queued-40d", "running-40d",
    "done-1d", "failed-1d", "duplicate-1d", "queued-1d", "running-1d",
}  # fmt: skip


def test_purge_deletes_old_finished_events_with_their_history(
    tmp_path: Path, database_url: str
) -> None:
    _store(database_url)
    runner = CliRunner()
    env = _env(tmp_path, database_url)
    dry = runner.invoke(cli, ["purge", "--older-than", "30d", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would delete 3 finished event(s)" in dry.output
    assert len(_left(database_url)[0]) == 10
    done = runner.invoke(cli, ["purge", "--older-than", "30d"], env=env)
    assert done.exit_code == 0, done.output
    assert "deleted 3 finished event(s) received before" in done.output
    ids, rules, steps = _left(database_url)
    assert ids == KEPT
    assert (rules, steps) == (7, 7)
    again = runner.invoke(cli, ["purge", "--older-than", "30d"], env=env)
    assert "deleted 0 finished event(s)" in again.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "Missing option '--older-than'"),
        (["--older-than", "30x"], "is not a duration"),
        (["--older-than", "thirty days"], "is not a duration"),
        (["--older-than", "-5d"], "is not a duration"),
        (["--older-than", ""], "is not a duration"),
        (["--older-than", "0"], "is no age; give one longer than zero"),
        (["--older-than", "0d"], "is no age; give one longer than zero"),
        (["--older-than"], "requires an argument"),
    ],
)
def test_bad_ages_are_refused(tmp_path: Path, args: list[str], says: str) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    result = CliRunner().invoke(cli, ["purge", *args], env=_env(tmp_path, url))
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_purge_on_a_missing_database_fails_without_creating_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'deskwire.db'}"
    result = CliRunner().invoke(cli, ["purge", "--older-than", "30d"], env=_env(tmp_path, url))
    assert result.exit_code == 1
    assert "there is no database" in result.output
    assert not (tmp_path / "state").exists()


@pytest.mark.integration
def test_workers_purge_by_themselves_with_a_retention_setting(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    _store(database_url)
    rules = "rules:\n  - id: r\n    on: [x.y]\n    actions: [{uses: log, with: {message: x}}]\n"
    with deployment(
        tmp_path, database_url, redis_url, rules=rules, extra_env={"DESKWIRE_PURGE_AFTER": "30d"}
    ) as d:
        old_finished = {"done-40d", "failed-40d", "duplicate-40d"}
        wait_until(
            lambda: old_finished.isdisjoint(_left(database_url)[0]),
            60,
            lambda: "the old finished events purged: " + d.worker_log()[-3000:],
            interval=0.2,
        )
        ids = _left(database_url)[0]
        assert old_finished.isdisjoint(ids), d.worker_log()[-3000:]
        # Recent events stay. (The old queued and running ones are dispatched by the
        # sweeper, run, and once finished are old enough to go too.)
        recent = {"done-1d", "failed-1d", "duplicate-1d", "queued-1d", "running-1d"}
        assert ids >= recent
        assert "finished event(s) older than the retention" in d.worker_log()
