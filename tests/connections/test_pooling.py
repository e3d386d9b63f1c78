"""Clients of a connection share one pooled transport per process (issue 9, point 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from connections import InsecureURLError
from tests.wsgi_server import send_json, serving_handler

from .conftest import ConnectionsFactory
from .test_auth_types import API_KEY_YAML


class _Echo(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive (werkzeug's dev server closes every connection)."""

    protocol_version = "HTTP/1.1"
    ports: list[int]
    keys: list[str | None]

    def do_GET(self) -> None:
        self.ports.append(self.client_address[1])
        self.keys.append(self.headers.get("X-Api-Key"))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        send_json(self, json.dumps({"ok": True}).encode())

    do_POST = do_GET  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def keep_alive_server() -> Iterator[tuple[str, list[int], list[str | None]]]:
    """A keep-alive HTTP server recording the client port and API key of every request."""
    ports: list[int] = []
    keys: list[str | None] = []
    handler = type("Echo", (_Echo,), {"ports": ports, "keys": keys})
    with serving_handler(handler) as url:
        yield url, ports, keys


def test_steps_reuse_one_pooled_connection_and_still_check_every_url(
    make: ConnectionsFactory, keep_alive_server: tuple[str, list[int], list[str | None]]
) -> None:
    url, ports, keys = keep_alive_server
    conns = make(API_KEY_YAML.format(url=url), {"TK": "key-1", "TA": "tok-1"})
    for _ in range(5):  # five steps, each with its own client closed after use
        with conns.client("tickets_file") as client:
            assert client.get("/apikey/echo").json() == {"ok": True}
    assert keys == ["key-1"] * 5  # every client authenticated as the connection
    assert len(ports) == 5
    assert len(set(ports)) == 1  # one TCP connection, kept alive across the clients
    with conns.client("tickets_file") as client, pytest.raises(InsecureURLError):
        client.get("http://example.com/apikey/echo")  # the per-request check still runs
    conns.close()
    with conns.client("tickets_file") as client:  # a closed pool is opened again
        assert client.get("/apikey/echo").status_code == 200
