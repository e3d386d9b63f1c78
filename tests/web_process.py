"""A real ``deskwire web`` process (gunicorn and its workers) for tests, on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from deskwire.embedded import free_port

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
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/healthz", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"deskwire web did not start:\n{log.read_text(errors='replace')}"
                    ) from None
                time.sleep(0.2)
        yield base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
