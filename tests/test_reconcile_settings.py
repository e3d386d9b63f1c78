"""Reconciliation is off by default; each bad setting or argument says what and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deskwire.settings import Settings, SettingsError, load_settings
from tests.integration import ROOT


def test_off_by_default() -> None:
    settings = Settings()
    assert settings.reconcile_interval == 0
    assert settings.reconcile_sources == []
    assert (settings.reconcile_lookback, settings.reconcile_delay) == (3600, 120)


def test_durations_and_sources_are_read() -> None:
    settings = load_settings(
        reconcile_interval="5m", reconcile_lookback="2h", reconcile_delay="90s",
        reconcile_sources="itdesk, hr", reconcile_max_calls="40",
    )  # fmt: skip
    assert (settings.reconcile_interval, settings.reconcile_lookback) == (300, 7200)
    assert settings.reconcile_delay == 90
    assert settings.reconcile_sources == ["itdesk", "hr"]
    assert settings.reconcile_max_calls == 40


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"reconcile_interval": "5x"}, "DESKWIRE_RECONCILE_INTERVAL: '5x' is not a duration"),
        ({"reconcile_interval": "-1"}, "DESKWIRE_RECONCILE_INTERVAL: '-1' is not a duration"),
        ({"reconcile_lookback": "0"}, "DESKWIRE_RECONCILE_LOOKBACK: Input should be greater"),
        ({"reconcile_max_calls": "0"}, "DESKWIRE_RECONCILE_MAX_CALLS: Input should be greater"),
        ({"reconcile_sources": "itdesk,IT Desk"},
         "DESKWIRE_RECONCILE_SOURCES: 'IT Desk' is not a source name"),
        ({"reconcile_interval": "5m", "reconcile_lookback": "2d"},
         "DESKWIRE_RECONCILE_LOOKBACK plus DESKWIRE_RECONCILE_DELAY must not exceed "
         "DESKWIRE_DEDUPE_WINDOW (86400s)"),
        ({"reconcile_interval": "5m", "reconcile_delay": "10m"},
         "DESKWIRE_RECONCILE_DELAY must be shorter than DESKWIRE_OWN_WRITE_WINDOW (300s)"),
    ],
)  # fmt: skip
def test_bad_settings_say_which_and_why(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**overrides)
    assert message in str(caught.value)


def _deskwire(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DESKWIRE_")}
    return subprocess.run(
        [sys.executable, "-P", "-m", "deskwire", *args],
        env={**base, "DESKWIRE_VAR_DIR": str(tmp_path / "var"),
             "DESKWIRE_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}", **env},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_bad_setting_stops_the_command_naming_the_variable(tmp_path: Path) -> None:
    result = _deskwire(tmp_path, "reconcile", "status", DESKWIRE_RECONCILE_INTERVAL="often")
    assert result.returncode == 2
    assert "DESKWIRE_RECONCILE_INTERVAL: 'often' is not a duration" in result.stderr


def test_a_bad_source_argument_is_refused(tmp_path: Path) -> None:
    result = _deskwire(tmp_path, "reconcile", "run", "--source", "IT Desk")
    assert result.returncode == 2
    assert "--source" in result.stderr
    assert "'IT Desk' is not a source name" in result.stderr


def test_status_of_a_database_without_tables_says_what_to_run(tmp_path: Path) -> None:
    result = _deskwire(tmp_path, "reconcile", "status")
    assert result.returncode == 1
    assert "deskwire db upgrade" in result.stderr


def test_run_without_an_sdp_connection_says_so(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    connections = tmp_path / "connections.yml"
    connections.write_text("connections: {}\n")
    result = _deskwire(
        tmp_path, "reconcile", "run", DESKWIRE_DATABASE_URL=database_url,
        DESKWIRE_BROKER_URL=redis_url, DESKWIRE_CONNECTIONS_FILE=str(connections),
    )  # fmt: skip
    assert result.returncode == 1
    assert "Error: at least one secret key is needed" in result.stderr
    assert "Traceback" not in result.stderr
    key = "test-key-of-this-test"
    result = _deskwire(
        tmp_path, "reconcile", "run", DESKWIRE_DATABASE_URL=database_url,
        DESKWIRE_BROKER_URL=redis_url, DESKWIRE_CONNECTIONS_FILE=str(connections),
        DESKWIRE_SECRET_KEY=key,
    )  # fmt: skip
    assert result.returncode == 1
    assert "nothing to reconcile: no SDP connection in the connections file" in result.stderr
    result = _deskwire(
        tmp_path, "reconcile", "run", "--source", "itdesk", DESKWIRE_DATABASE_URL=database_url,
        DESKWIRE_BROKER_URL=redis_url, DESKWIRE_CONNECTIONS_FILE=str(connections),
        DESKWIRE_SECRET_KEY=key,
    )  # fmt: skip
    assert result.returncode == 1
    assert "reconciliation of itdesk:" in result.stderr  # the connection error, logged
