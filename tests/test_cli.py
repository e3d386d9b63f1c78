"""The deskwire command: help, settings errors, bad arguments, and `serve` all-in-one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from deskwire.cli import cli
from deskwire.embedded import free_port
from tests.integration import ROOT
from tests.waiting import wait_until

COMMANDS_THAT_LISTEN = ["serve", "web", "flower"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deskwire", *args],
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for name in [
        "serve",
        "web",
        "worker",
        "flower",
        "events",
        "rules",
        "connections",
        "db",
        "doctor",
        "purge",
    ]:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output
    for name in COMMANDS_THAT_LISTEN:
        output = runner.invoke(cli, [name, "--help"]).output
        assert "--host" in output
        assert "--port" in output


def test_installed_entry_point_runs() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "deskwire"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "deskwire" in result.stdout


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("DESKWIRE_DATABASE_URL", "mysql://db/x", "sqlite:/// or postgresql://"),
        ("DESKWIRE_BROKER_URL", "amqp://guest@localhost//", "redis://"),
        ("DESKWIRE_BROKER_URL", "unix:///run/redis/redis.sock", "Unix-socket broker"),
        ("DESKWIRE_BROKER_URL", "redis+socket:///run/redis/redis.sock", "Unix-socket broker"),
        ("DESKWIRE_DEDUPE_WINDOW", "forever", "not a duration"),
        ("DESKWIRE_WEBHOOK_MAX_BYTES", "-5", "greater than 0"),
        ("DESKWIRE_LOG_LEVEL", "LOUD", "DEBUG, INFO"),
        ("DESKWIRE_PUBLIC_URL", "ftp://x", "https://"),
        ("DESKWIRE_HTTP_TIMEOUT", "soon", "valid number"),
    ],
)
def test_bad_setting_stops_with_the_variable_named(
    tmp_path: Path, variable: str, value: str, fragment: str
) -> None:
    result = run("events", "list", env={variable: value, "DESKWIRE_VAR_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert variable in result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_several_bad_settings_are_all_reported(tmp_path: Path) -> None:
    result = run(
        "events",
        "list",
        env={
            "DESKWIRE_DATABASE_URL": "mysql://x",
            "DESKWIRE_LOG_LEVEL": "LOUD",
            "DESKWIRE_VAR_DIR": str(tmp_path),
        },
    )
    assert "DESKWIRE_DATABASE_URL" in result.stderr
    assert "DESKWIRE_LOG_LEVEL" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["web", "--port", "0"],
        ["web", "--port", "http"],
        ["serve", "--concurrency", "0"],
        ["worker", "--concurrency", "-1"],
        ["events", "list", "--status", "lost"],
        ["events", "replay"],
        ["nonsense"],
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "Error" in result.output


def test_web_and_worker_without_a_broker_say_what_to_set(tmp_path: Path) -> None:
    env = {"DESKWIRE_VAR_DIR": str(tmp_path), "DESKWIRE_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}
    for command in (["web"], ["worker"]):
        result = subprocess.run(
            [sys.executable, "-m", "deskwire", *command],
            env={k: v for k, v in os.environ.items() if k != "DESKWIRE_BROKER_URL"} | env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert "DESKWIRE_BROKER_URL is not set" in result.stderr


def test_events_show_of_a_missing_event(tmp_path: Path) -> None:
    env = {"DESKWIRE_VAR_DIR": str(tmp_path), "DESKWIRE_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}
    assert run("db", "upgrade", env=env).returncode == 0
    result = run("events", "show", "12345", env=env)
    assert result.returncode == 1
    assert "no event with the number or event id '12345'" in result.stderr


def test_events_replay_of_a_missing_event_exits_non_zero(tmp_path: Path, database_url: str) -> None:
    env = {
        "DESKWIRE_VAR_DIR": str(tmp_path),
        "DESKWIRE_DATABASE_URL": database_url,
        "DESKWIRE_BROKER_URL": "redis://127.0.0.1:1/0",
    }
    result = run("events", "replay", "999999", env=env)
    assert result.returncode == 1
    assert "999999: not replayed" in result.stdout + result.stderr


@pytest.mark.integration
def test_serve_runs_web_worker_flower_and_its_own_redis(tmp_path: Path) -> None:
    web_port, flower_port = free_port(), free_port()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "log.yml").write_text(
        "rules:\n  - id: log-all\n    on: ['*']\n    actions:\n"
        "      - uses: log\n        with: {message: 'got {{ event.type }}'}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKWIRE_")}
    env |= {
        "DESKWIRE_VAR_DIR": str(tmp_path / "var"),
        "DESKWIRE_DATABASE_URL": f"sqlite:///{tmp_path}/var/deskwire.db",
        "DESKWIRE_RULES_DIR": str(tmp_path / "rules"),
        "DESKWIRE_CONNECTIONS_FILE": str(tmp_path / "connections.yml"),
    }
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")  # a file, not a pipe: a full pipe would stall the children
    process = subprocess.Popen(
        [
            sys.executable, "-m", "deskwire", "serve",
            "--port", str(web_port), "--flower-port", str(flower_port), "--concurrency", "1",
        ],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{web_port}"

        def answers(url: str) -> bool:
            assert process.poll() is None, log_path.read_text()[-8000:]
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(lambda: answers(base + "/healthz"), 60, "serve becoming healthy")
        token = (tmp_path / "var" / "webhook-token").read_text().strip()
        body = (ROOT / "examples" / "webhook.json").read_bytes()
        response = httpx.post(
            base + "/webhooks/sdp",
            content=body,
            headers={"X-Deskwire-Token": token, "Content-Type": "application/json"},
        )
        assert response.status_code == 202
        by_query = httpx.post(
            base + "/webhooks/sdp",
            params={"token": token},
            json={
                "event": "request.updated",
                "event_id": "q-1",
                "request": {"id": "7", "subject": "q"},
            },
        )
        assert by_query.status_code == 202
        assert (tmp_path / "var" / "redis" / "appendonly.aof").exists() or any(
            (tmp_path / "var" / "redis").glob("appendonly*")
        )

        def listed_done() -> bool:
            assert process.poll() is None, log_path.read_text()[-8000:]
            return '"status": "done"' in run("events", "list", "--json", env=env).stdout

        wait_until(
            listed_done,
            60,
            lambda: (
                f"an event done: {run('events', 'list', '--json', env=env).stdout}\n"
                + log_path.read_text()[-8000:]
            ),
            interval=0.5,
        )
        wait_until(lambda: answers(f"http://127.0.0.1:{flower_port}/"), 60, "Flower answering")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0
    log.close()
    output = log_path.read_text()
    assert "POST /webhooks/sdp" in output  # the access log is on …
    assert token not in output  # … and a ?token= never reaches it


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        (
            {"DESKWIRE_TASK_SOFT_TIME_LIMIT": "10m", "DESKWIRE_TASK_TIME_LIMIT": "5m"},
            "DESKWIRE_TASK_SOFT_TIME_LIMIT must be shorter than DESKWIRE_TASK_TIME_LIMIT",
        ),
        (
            {"DESKWIRE_BROKER_VISIBILITY_TIMEOUT": "10m"},
            "DESKWIRE_BROKER_VISIBILITY_TIMEOUT must exceed",
        ),
    ],
)
def test_settings_that_do_not_fit_together_are_refused(
    tmp_path: Path, env: dict[str, str], fragment: str
) -> None:
    result = run("events", "list", env={**env, "DESKWIRE_VAR_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert fragment in result.stderr


def test_flower_beyond_loopback_needs_a_sign_in(tmp_path: Path) -> None:
    env = {"DESKWIRE_BROKER_URL": "redis://127.0.0.1:1/0", "DESKWIRE_VAR_DIR": str(tmp_path)}
    refused = run("flower", "--host", "0.0.0.0", env=env)
    assert refused.returncode == 2
    assert "set DESKWIRE_FLOWER_BASIC_AUTH" in refused.stderr
    for bad in ("ops", "ops:", ":secret-value", "ops:pw,alone"):
        result = run("flower", env={**env, "DESKWIRE_FLOWER_BASIC_AUTH": bad})
        assert result.returncode != 0
        assert "DESKWIRE_FLOWER_BASIC_AUTH: must be user:password" in result.stderr
        assert "secret-value" not in result.stderr
        assert "Traceback" not in result.stderr
