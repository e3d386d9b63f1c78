"""deskwire runs from an operator's folder whose sub-folders share our package names.

The folder holds ``rules/``, ``worker/``, ``webhooks/``, ``connections/`` and ``sdp/``
(each with an ``__init__.py`` that raises when imported) and a ``connections.yml``; the
installed ``deskwire`` command, ``python -m deskwire`` and every process ``serve`` starts
must use deskwire's own packages, never these.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deskwire.embedded import free_port
from tests.integration import ROOT

DESKWIRE = str(Path(sys.executable).parent / "deskwire")
SHADOWED = ("rules", "worker", "webhooks", "connections", "sdp")
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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def token(self) -> str:
        return (self.folder / "var" / "webhook-token").read_text().strip()

    def wait_for_status(self, event_id: str, status: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        rows: list[dict] = []
        while time.monotonic() < deadline:
            listed = deskwire(self.folder, "events", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            rows = [r for r in json.loads(listed.stdout) if r["event_id"] == event_id]
            if rows and rows[0]["status"] == status:
                return rows[0]
            assert self.process.poll() is None, self.log()[-8000:]
            time.sleep(0.5)
        raise AssertionError(f"{event_id} did not reach {status}: {rows}\n{self.log()[-8000:]}")


def start_serve(folder: Path, env: dict[str, str]) -> Served:
    port = free_port()
    log_path = folder / "serve.log"
    with log_path.open("w") as log:  # a file, not a pipe: a full pipe would stall the children
        process = subprocess.Popen(
            [DESKWIRE, "serve", "--port", str(port), "--no-flower", "--concurrency", "1"],
            env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    served = Served(folder, process, log_path, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(served.base_url + "/healthz", timeout=2).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{served.log()}")
        time.sleep(0.3)
    stop_serve(served)
    raise AssertionError(f"serve did not become healthy:\n{served.log()}")


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
    running = start_serve(folder, operator_env())
    yield running
    code = stop_serve(running)
    assert code == 0, running.log()[-8000:]


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
    assert "was imported as a package" not in served.log()


@pytest.mark.parametrize("module", [False, True], ids=["console-script", "python-m"])
def test_commands_in_a_folder_of_shadowing_names(tmp_path: Path, module: bool) -> None:
    make_operator_folder(tmp_path)
    for args in (["--version"], ["rules", "check"], ["connections", "list"]):
        result = deskwire(tmp_path, *args, module=module)
        assert result.returncode == 0, (args, result.stderr)
        assert "was imported as a package" not in result.stderr
