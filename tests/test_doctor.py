"""``deskwire doctor``: every part checked, what to fix said, exit 1 when something must be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from deskwire.cli import cli
from deskwire.database import make_engine
from deskwire.doctor import CHECKS, Checkup, Finding, Level, report, run_checks
from deskwire.embedded import free_port
from deskwire.schema import BASELINE, upgrade
from deskwire.settings import Settings

USES_TICKETS = (
    "rules:\n  - id: call\n    on: ['*']\n    actions:\n      - uses: http.get\n"
    "        with: {connection: tickets_main, url: 'https://tickets.example/x'}\n"
)
TICKETS = """\
services:
  tickets:
    auth: api_key
    base_url: https://tickets.example
    params:
      - {name: X-Api-Key, display_name: API key, placement: header}
connections:
  tickets_main:
    name: Tickets
    service: tickets
"""


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DESKWIRE_")}
    return base | {
        "DESKWIRE_VAR_DIR": str(tmp_path / "var"),
        "DESKWIRE_RULES_DIR": str(tmp_path / "rules"),
        "DESKWIRE_CONNECTIONS_FILE": str(tmp_path / "connections.yml"),
        **values,
    }


@pytest.fixture
def healthy(tmp_path: Path, database_url: str, redis_url: str) -> dict[str, str]:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yml").write_text(USES_TICKETS)
    (tmp_path / "connections.yml").write_text(TICKETS)
    env = _env(
        tmp_path,
        DESKWIRE_DATABASE_URL=database_url,
        DESKWIRE_BROKER_URL=redis_url,
        DESKWIRE_SECRET_KEY="doctor-key",
        DESKWIRE_WEBHOOK_TOKENS="doctor-token",
        DESKWIRE_ADMIN_PASSWORD="doctor-admin",
        DESKWIRE_PUBLIC_URL="https://deskwire.example.com",
    )
    connect = CliRunner().invoke(
        cli, ["connections", "connect", "tickets_main", "--value", "X-Api-Key=k"], env=env
    )
    assert connect.exit_code == 0, connect.output
    return env


def test_a_healthy_deployment_passes(healthy: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["doctor"], env=healthy)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "everything needed is in order" in out
    for area in ("settings", "database", "broker", "rules", "connections"):
        assert any(line.startswith("ok") and area in line for line in out.splitlines()), area
    assert "tickets_main: connected" in out
    assert "schema revision" in out
    assert "doctor-key" not in result.output  # no secret is ever printed


def test_every_broken_part_is_reported_with_its_fix(
    tmp_path: Path, empty_database_url: str
) -> None:
    engine = make_engine(empty_database_url)
    upgrade(engine, BASELINE)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE alembic_version")  # from before migrations
    engine.dispose()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yml").write_text("rules:\n  - id: Bad Id\n    on: x\n")
    (tmp_path / "connections.yml").write_text(TICKETS)
    env = _env(
        tmp_path,
        DESKWIRE_DATABASE_URL=empty_database_url,
        DESKWIRE_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",
        DESKWIRE_PUBLIC_URL="http://deskwire.example.com",
    )
    result = CliRunner().invoke(cli, ["doctor"], env=env)
    assert result.exit_code == 1
    out = result.stdout
    assert (
        "fail  settings     DESKWIRE_SECRET_KEY is unset and there is no development value" in out
    )
    assert "DESKWIRE_PUBLIC_URL http://deskwire.example.com is plain HTTP" in out
    assert "fail  database" in out
    assert "created before deskwire had migrations" in out
    assert "fix: run `deskwire db upgrade`" in out
    assert "fail  broker" in out
    assert "does not answer" in out
    assert "fail  rules" in out
    assert "run `deskwire rules check`" in out
    assert "tokens not checked" in out
    assert "problem(s) to fix" in out
    assert "Traceback" not in result.output


def test_a_connection_without_a_token_is_a_problem(healthy: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "connections.yml").write_text(
        TICKETS + "  tickets_other:\n    name: Other\n    service: tickets\n"
    )
    result = CliRunner().invoke(cli, ["doctor"], env=healthy)
    assert result.exit_code == 1
    assert "fail  connections  tickets_other: not connected" in result.stdout
    assert "deskwire connections connect tickets_other" in result.stdout


def test_a_development_secret_is_a_warning_not_a_failure(
    healthy: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "var").mkdir(exist_ok=True)
    (tmp_path / "var" / "webhook-token").write_text("dev-token\n")
    env = {k: v for k, v in healthy.items() if k != "DESKWIRE_WEBHOOK_TOKENS"}
    result = CliRunner().invoke(cli, ["doctor"], env=env)
    assert result.exit_code == 0, result.output
    assert "warn  settings     DESKWIRE_WEBHOOK_TOKENS is unset" in result.stdout
    assert "dev-token" not in result.output


def test_checks_are_a_list_others_add_to_and_a_crash_is_a_finding(tmp_path: Path) -> None:
    def check_workers(checkup: Checkup) -> list[Finding]:
        return [Finding(Level.WARN, "workers", "no heartbeat for 90 s", "start a worker")]

    def check_broken(checkup: Checkup) -> list[Finding]:
        raise RuntimeError("boom")

    settings = Settings(var_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path}/d.db")
    findings = run_checks(settings, [check_workers, check_broken])
    assert findings[0] == Finding(Level.WARN, "workers", "no heartbeat for 90 s", "start a worker")
    assert findings[1].level == Level.FAIL
    assert findings[1].area == "broken"
    text, ok = report(findings)
    assert not ok
    assert "fix: start a worker" in text
    assert [c.__name__ for c in CHECKS[:5]] == [
        "check_settings", "check_database", "check_broker", "check_rules", "check_connections",
    ]  # fmt: skip
    assert not (tmp_path / "d.db").exists()  # doctor creates nothing
