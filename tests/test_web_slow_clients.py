"""Slow and idle clients cannot starve ingest: the real ``deskwire web`` process."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.web_process import web_process

TOKEN = "slow-client-token"
HALF_HEAD = b"POST /webhooks/sdp HTTP/1.1\r\nHost: deskwire\r\nX-Deskwire-Token: "

pytestmark = pytest.mark.integration


@pytest.fixture
def web(tmp_path: Path, redis_url: str, upgraded_sqlite_file: Path) -> Iterator[tuple[str, int]]:
    (tmp_path / "rules").mkdir()
    shutil.copyfile(upgraded_sqlite_file, tmp_path / "web.db")
    env = {
        "DESKWIRE_BROKER_URL": redis_url,
        "DESKWIRE_DATABASE_URL": f"sqlite:///{tmp_path}/web.db",
        "DESKWIRE_WEBHOOK_TOKENS": TOKEN,
        "DESKWIRE_SECRET_KEY": "slow-client-secret-key",
        "DESKWIRE_RULES_DIR": str(tmp_path / "rules"),
        "DESKWIRE_CONNECTIONS_FILE": str(tmp_path / "connections.yml"),
        "DESKWIRE_VAR_DIR": str(tmp_path / "var"),
    }
    with web_process(env, tmp_path / "web.log") as base:
        yield base, int(base.rsplit(":", 1)[1])


def _webhook(base: str, event_id: str) -> httpx.Response:
    body = {"event": "request.created", "event_id": event_id, "request": {"id": "42"}}
    return httpx.post(
        base + "/webhooks/sdp", json=body, headers={"X-Deskwire-Token": TOKEN}, timeout=10
    )


def _open(port: int, count: int, first_bytes: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if first_bytes:
            sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


def test_a_webhook_answers_within_a_second_while_50_sockets_sit_idle(
    web: tuple[str, int],
) -> None:
    base, port = web
    # Half say nothing, half stop in the middle of their headers (the slow-loris case).
    idle = _open(port, 25, b"") + _open(port, 25, HALF_HEAD)
    try:
        # Nothing outside the server says it has taken a socket that sent no byte: give it
        # half a second to accept and park all 50, so the timing below runs behind them.
        time.sleep(0.5)
        for n in range(3):
            started = time.monotonic()
            response = _webhook(base, f"while-idle-{n}")
            elapsed = time.monotonic() - started
            assert response.status_code == 202, response.text
            assert elapsed < 1.0, f"webhook took {elapsed:.2f}s behind 50 idle sockets"
    finally:
        for sock in idle:
            sock.close()


def test_a_head_sent_in_slow_pieces_is_still_served(web: tuple[str, int]) -> None:
    """Buffering heads must not break clients that are merely slow."""
    _base, port = web
    body = b'{"event": "request.created", "event_id": "slow-pieces", "request": {"id": "7"}}'
    head = (
        b"POST /webhooks/sdp HTTP/1.1\r\nHost: deskwire\r\nContent-Type: application/json\r\n"
        + f"X-Deskwire-Token: {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for start in range(0, len(head), 20):
            sock.sendall(head[start : start + 20])
            time.sleep(0.05)  # the slow client under test: its head comes in pieces
        sock.sendall(body)
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 202"), reply[:200]


def test_kept_alive_connections_serve_several_requests(web: tuple[str, int]) -> None:
    base, _port = web
    with httpx.Client(base_url=base, timeout=10) as client:
        for n in range(3):
            body = {
                "event": "request.created",
                "event_id": f"keepalive-{n}",
                "request": {"id": "9"},
            }
            response = client.post("/webhooks/sdp", json=body, headers={"X-Deskwire-Token": TOKEN})
            assert response.status_code == 202, response.text


def test_a_head_that_never_ends_is_closed(web: tuple[str, int]) -> None:
    """A client that trickles a head forever is cut off (HEADER_TIMEOUT), not served."""
    _base, port = web
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(HALF_HEAD)
        deadline = time.monotonic() + 30
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"x")
                time.sleep(1)  # the trickle under test: a byte a second
                sock.setblocking(False)
                try:
                    closed = sock.recv(1024) == b""
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            except OSError:
                closed = True
        assert closed, "a head trickled for 30 s was still open"
