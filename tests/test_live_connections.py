"""Processes pick up an edited connections.yml without a restart; a bad edit keeps the last."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis

import connections.store  # noqa: F401 - registers the token tables
from connections import ConnectionsConfigError
from deskwire.compose import live_connections
from deskwire.database import make_engine, session_factory
from deskwire.settings import Settings
from tests.waiting import wait_until

ONE = """\
connections:
  pd:
    name: PagerDuty
    service: pagerduty
    values: {Authorization: "${PD_KEY}"}
"""
TWO = ONE + "  gh:\n    name: GitHub\n    service: github_token\n"


def test_reloads_on_edit_and_keeps_the_last_good_on_a_bad_edit(
    tmp_path: Path, database_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "connections.yml"
    path.write_text(ONE)
    settings = Settings(
        database_url=database_url,
        broker_url=redis_url,
        connections_file=path,
        secret_key="k",
        reload_interval=0.05,
    )
    engine = make_engine(database_url)
    live = live_connections(settings, session_factory(engine), redis.Redis.from_url(redis_url))
    assert set(live().config.connections) == {"pd"}
    path.write_text(TWO)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    wait_until(lambda: set(live().config.connections) == {"pd", "gh"}, 10, "the edit taking effect")
    path.write_text("connections: [broken\n")

    def broken_edit_seen() -> bool:
        live()  # looks at the file (at most every reload_interval)
        return "is invalid; keeping the connections loaded before" in caplog.text

    wait_until(broken_edit_seen, 10, "the broken edit being seen")
    assert set(live().config.connections) == {"pd", "gh"}


def test_a_bad_file_at_start_is_an_error(tmp_path: Path, database_url: str, redis_url: str) -> None:
    path = tmp_path / "connections.yml"
    path.write_text("connections: [broken\n")
    settings = Settings(
        database_url=database_url, broker_url=redis_url, connections_file=path, secret_key="k"
    )
    live = live_connections(
        settings, session_factory(make_engine(database_url)), redis.Redis.from_url(redis_url)
    )
    with pytest.raises(ConnectionsConfigError):
        live()
