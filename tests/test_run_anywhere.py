"""deskwire runs from an operator's folder, and its CLI reaches what ``serve`` runs there.

The folder holds ``rules/``, ``worker/``, ``webhooks/``, ``connections/``, ``sdp/`` and
``configfiles/`` (each with an ``__init__.py`` that raises when imported) and a
``connections.yml``; the installed ``deskwire`` command, ``python -m deskwire`` and every
process ``serve`` starts must use deskwire's own packages, never these. With ``serve``
running (quick start: no DESKWIRE_* variables at all), the CLI finds its embedded Redis
through ``var/broker-url``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from flask import Flask, request

from deskwire.embedded import free_port
from tests.integration import ROOT
from tests.waiting import wait_until
from tests.wsgi_server import serving

DESKWIRE = str(Path(sys.executable).parent / "deskwire")
SHADOWED = ("rules", "worker", "webhooks", "connections", "sdp", "configfiles")
LOG_RULE = (
    "rules:\n  - id: log-all\n    on: ['*']\n    actions:\n"
    "      - uses: log\n        with: {message: 'got {{ event.type }}'}\n"
)


def make_operator_folder(folder: Path) -> None:
    """A folder as an operator would keep it, full of names that shadow ours."""
    for name in SHADOWED:
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "__init__.py").write_text(
            f"raise RuntimeError('the operator folder {name}/ was imported as a package')\n"
        )
    (folder / "rules" / "log.yml").write_text(LOG_RULE)
    (folder / "connections.yml").write_text("connections: {}\n")


def tickets_service() -> Flask:
    """A service that wants the API key ``k1`` in ``X-Api-Key``."""
    app = Flask("tickets")

    @app.get("/")
    def root() -> tuple[str, int]:
        return ("ok", 200) if request.headers.get("X-Api-Key") == "k1" else ("no", 401)

    return app


TICKETS = """\
services:
  tickets:
    auth: api_key
    base_url: {url}
    params:
      - {{name: X-Api-Key, display_name: API key, placement: header}}
connections:
  tickets_main:
    name: Tickets
    service: tickets
"""


def operator_env(**extra: str) -> dict[str, str]:
    """The environment of an operator's shell: no DESKWIRE_* left over from the suite."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DESKWIRE_") and k not in ("PYTHONPATH", "PYTHONSAFEPATH")
    }
    env |= {"DESKWIRE_RULES_DIR": "rules", "DESKWIRE_CONNECTIONS_FILE": "connections.yml"}
    return env | extra


def deskwire(
    folder: Path, *args: str, env: dict[str, str] | None = None, module: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a deskwire command in ``folder`` as an operator would."""
    command = [sys.executable, "-m", "deskwire"] if module else [DESKWIRE]
    return subprocess.run(
        [*command, *args],
        env=env or operator_env(),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=90,
    )


@dataclass
class Served:
    """A ``deskwire serve`` running in an operator folder."""

    folder: Path
    process: subprocess.Popen[str]
    log_path: Path
    base_url: str
    flower_url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def token(self) -> str:
        return (self.folder / "var" / "webhook-token").read_text().strip()

    def post(self, body: dict) -> httpx.Response:
        return httpx.post(
            self.base_url + "/webhooks/sdp",
            json=body,
            headers={"X-Deskwire-Token": self.token()},
            timeout=10,
        )

    def wait_for_status(self, event_id: str, status: str, timeout: float = 90) -> dict:
        rows: list[dict] = []

        def reached() -> dict | None:
            nonlocal rows
            listed = deskwire(self.folder, "events", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            rows = [r for r in json.loads(listed.stdout) if r["event_id"] == event_id]
            if rows and rows[0]["status"] == status:
                return rows[0]
            assert self.process.poll() is None, self.log()[-8000:]
            return None

        return wait_until(
            reached,
            timeout,
            lambda: f"{event_id} reaching {status}: {rows}\n{self.log()[-8000:]}",
            interval=0.5,
        )


def start_serve(folder: Path, env: dict[str, str]) -> Served:
    port, flower_port = free_port(), free_port()
    log_path = folder / "serve.log"
    with log_path.open("w") as log:  # a file, not a pipe: a full pipe would stall the children
        process = subprocess.Popen(
            [
                DESKWIRE, "serve", "--port", str(port), "--flower-port", str(flower_port),
                "--concurrency", "1",
            ],
            env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    served = Served(
        folder, process, log_path, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{flower_port}"
    )

    def healthy() -> bool:
        if answers(served.base_url + "/healthz"):
            return True
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{served.log()}")
        return False

    try:
        wait_until(healthy, 90, lambda: f"serve becoming healthy:\n{served.log()}")
    except AssertionError:
        if process.poll() is None:
            stop_serve(served)
        raise
    return served


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 (False while nothing listens there yet)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def stop_serve(served: Served) -> int:
    served.process.send_signal(signal.SIGTERM)
    try:
        return served.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait()
        raise


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("operator")
    make_operator_folder(folder)
    with serving(tickets_service()) as tickets_url:
        (folder / "connections.yml").write_text(TICKETS.format(url=tickets_url))
        running = start_serve(folder, operator_env())
        yield running
        code = stop_serve(running)
    assert code == 0, running.log()[-8000:]
    assert not (folder / "var" / "broker-url").exists()  # removed on a clean exit


@pytest.mark.integration
def test_serve_in_a_folder_of_shadowing_names_processes_a_webhook(served: Served) -> None:
    body = (ROOT / "examples" / "webhook.json").read_bytes()
    response = httpx.post(
        served.base_url + "/webhooks/sdp",
        content=body,
        headers={"X-Deskwire-Token": served.token(), "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    served.wait_for_status("example-0001", "done")
    # Flower, started from the same folder, answers too.
    wait_until(
        lambda: answers(served.flower_url), 60, lambda: f"Flower answering:\n{served.log()[-4000:]}"
    )
    assert "was imported as a package" not in served.log()


@pytest.mark.integration
def test_events_show_and_replay_take_either_id_and_reach_the_embedded_redis(
    served: Served,
) -> None:
    response = served.post(
        {"event": "request.updated", "event_id": "replay-me", "request": {"id": "7"}}
    )
    assert response.status_code == 202
    reply = response.json()
    assert reply["event_id"] == "replay-me"
    assert reply["status"] == "queued"
    number = reply["id"]
    # Only an id, and no `sdp` connection to read the request with: a dead letter.
    served.wait_for_status("replay-me", "failed")
    by_id = deskwire(served.folder, "events", "show", "replay-me", "--json")
    by_number = deskwire(served.folder, "events", "show", str(number), "--json")
    assert by_id.returncode == 0, by_id.stderr
    assert json.loads(by_id.stdout) == json.loads(by_number.stdout)
    assert json.loads(by_id.stdout)["pk"] == number
    # No DESKWIRE_BROKER_URL anywhere: replay finds serve's Redis through var/broker-url.
    assert (served.folder / "var" / "broker-url").exists()
    replayed = deskwire(served.folder, "events", "replay", "replay-me")
    assert replayed.returncode == 0, replayed.stderr
    assert f"event {number}: queued again" in replayed.stdout
    served.wait_for_status("replay-me", "failed")  # queued, then run (and failed) again
    wait_until(
        lambda: served.log().count(f"event {number} failed") >= 2, 60, "the second failure logged"
    )
    assert served.log().count(f"event {number} failed") == 2
    missing = deskwire(served.folder, "events", "replay", "no-such-event")
    assert missing.returncode == 1
    assert "no event with the number or event id 'no-such-event'" in missing.stdout


@pytest.mark.integration
def test_connections_list_and_test_reach_the_embedded_redis(served: Served) -> None:
    connect = deskwire(
        served.folder, "connections", "connect", "tickets_main", "--value", "X-Api-Key=k1"
    )
    assert connect.returncode == 0, connect.stderr
    listed = deskwire(served.folder, "connections", "list")
    assert listed.returncode == 0, listed.stderr
    assert "tickets_main" in listed.stdout
    assert "connected" in listed.stdout
    tested = deskwire(served.folder, "connections", "test", "tickets_main")
    assert tested.returncode == 0, tested.stderr
    assert "tickets_main: HTTP 200" in tested.stdout


@pytest.mark.integration
def test_dev_secret_warnings_come_once_from_serve_and_never_from_the_cli(
    served: Served,
) -> None:
    log = served.log()
    for variable in ("DESKWIRE_SECRET_KEY", "DESKWIRE_WEBHOOK_TOKENS", "DESKWIRE_ADMIN_PASSWORD"):
        assert log.count(f"{variable} is not set") == 1, log[-4000:]
    for args in (["events", "list"], ["connections", "list"], ["rules", "check"]):
        result = deskwire(served.folder, *args)
        assert result.returncode == 0, result.stderr
        assert "is not set" not in result.stderr
        assert "WARNING" not in result.stderr


@pytest.mark.integration
def test_a_second_serve_in_the_same_folder_is_refused(served: Served) -> None:
    result = deskwire(served.folder, "serve", "--port", str(free_port()), "--no-flower")
    assert result.returncode == 1
    assert "another `deskwire serve` is running with the var folder" in result.stderr
    assert served.process.poll() is None


@pytest.mark.integration
def test_doctor_in_the_quick_start(served: Served) -> None:
    connect = deskwire(
        served.folder, "connections", "connect", "tickets_main", "--value", "X-Api-Key=k1"
    )
    assert connect.returncode == 0, connect.stderr
    result = deskwire(served.folder, "doctor")
    assert result.returncode == 0, result.stdout
    assert "ok    broker       Redis at 127.0.0.1:" in result.stdout  # found via var/broker-url
    assert "ok    database" in result.stdout
    assert "ok    connections  tickets_main: connected" in result.stdout
    assert "warn  settings     DESKWIRE_SECRET_KEY is unset" in result.stdout
    assert "everything needed is in order" in result.stdout


def test_commands_say_which_state_they_use_and_create_none(tmp_path: Path) -> None:
    make_operator_folder(tmp_path)
    for args in (["events", "list"], ["events", "show", "1"], ["connections", "list"]):
        result = deskwire(tmp_path, *args)
        assert result.returncode == 1, (args, result.stdout)
        assert f"database sqlite:///{tmp_path}/var/deskwire.db" in result.stderr
        assert f"var folder {tmp_path}/var" in result.stderr
        assert "there is no database at" in result.stderr
        assert "DESKWIRE_DATABASE_URL is unset" in result.stderr
        assert "deskwire db upgrade" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize("module", [False, True], ids=["console-script", "python-m"])
def test_commands_in_a_folder_of_shadowing_names(tmp_path: Path, module: bool) -> None:
    make_operator_folder(tmp_path)
    commands = (
        ["--version"],
        ["db", "upgrade"],
        ["db", "current"],
        ["rules", "check"],
        ["rules", "test", "event.json"],
        ["connections", "list"],
        ["events", "list"],
    )
    (tmp_path / "event.json").write_bytes((ROOT / "examples" / "webhook.json").read_bytes())
    env = operator_env(DESKWIRE_SECRET_KEY="operator-key")  # no serve ran here to make one
    for args in commands:
        result = deskwire(tmp_path, *args, env=env, module=module)
        assert result.returncode == 0, (args, result.stderr)
        assert "was imported as a package" not in result.stderr
