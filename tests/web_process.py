"""A real ``deskwire web`` process (gunicorn and its workers) for tests, on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from deskwire.embedded import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def web_process(env: dict[str, str], log: Path, *args: str) -> Iterator[str]:
    """Start ``deskwire web`` with ``env``; yield its base URL; stop it (and its workers)."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "deskwire", "web", "--port", str(port), *args],
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            try:
                httpx.get(base + "/healthz", timeout=2)
                return True
            except httpx.TransportError:
                assert process.poll() is None, "deskwire web exited:\n" + log.read_text(
                    errors="replace"
                )
                return False

        wait_until(
            answers, 60, lambda: f"deskwire web starting:\n{log.read_text(errors='replace')}"
        )
        yield base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
