"""One client per connection (and user) per process, with the current credentials at each
request (issue 9, third round). Real HTTP over loopback to the fake provider."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from connections import NeedsReconnectError, load_config
from connections.store import TokenStatus
from sdp import SdpClient
from tests.connections.conftest import (
    ConnectionsFactory,
    FakeProvider,
    connect_via_browser,
    oauth2_yaml,
    sessions_of,
    store_of,
)
from tests.connections.test_auth_types import API_KEY_YAML
from tests.wsgi_server import send_json, serving_handler

HEADER_KEY_YAML = """
services:
  keyed:
    name: Keyed
    auth: api_key
    base_url: {url}
    params:
      - {{name: X-Api-Key, display_name: API key, placement: header}}
connections:
  plain:
    service: keyed
    values: {{X-Api-Key: "${{TK}}"}}
"""


def _connected(make: ConnectionsFactory, provider: FakeProvider, **kwargs: Any) -> Any:
    conns = make(oauth2_yaml(provider.url, **kwargs))
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))
    return conns


def _keys_sent(provider: FakeProvider) -> list[str | None]:
    return [call["headers"].get("x-api-key") for call in provider.state.apikey_calls]


def test_steps_in_one_process_share_one_client(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(API_KEY_YAML.format(url=provider.url), {"TK": "key-1", "TA": "tok-1"})
    first = conns.client("tickets_file")
    for _ in range(3):  # three steps
        with conns.client("tickets_file") as client:
            assert client is first
            assert client.get("/apikey/echo").status_code == 200
    assert _keys_sent(provider) == ["key-1"] * 3
    conns.connect_static("tickets_main", {"X-Api-Key": "key-2", "account": "a", "authtoken": "t"})
    assert conns.client("tickets_main") is not first  # another connection, another client


def test_each_user_of_a_per_user_connection_has_its_own_client(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(oauth2_yaml(provider.url, per_user="true"))
    for user in ("ann@example.com", "bob@example.com"):
        conns.complete_callback(connect_via_browser(conns, "acme_crm", user=user))
    ann = conns.client("acme_crm", user="ann@example.com")
    bob = conns.client("acme_crm", user="bob@example.com")
    assert ann is not bob
    assert conns.client("acme_crm", user="ANN@example.com ") is ann
    ann.get(f"{provider.url}/api/echo")
    bob.get(f"{provider.url}/api/echo")
    ann_token = store_of(conns).load("acme_crm", "ann@example.com").access_token
    bob_token = store_of(conns).load("acme_crm", "bob@example.com").access_token
    sent = [call["authorization"] for call in provider.state.api_calls]
    assert sent == [
        f"Bearer {ann_token.get_secret_value()}",
        f"Bearer {bob_token.get_secret_value()}",
    ]


def test_a_reconnect_applies_at_the_next_request_of_the_same_client(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(API_KEY_YAML.format(url=provider.url), {"TK": "k", "TA": "t"})
    conns.connect_static("tickets_main", {"X-Api-Key": "key-1", "account": "a", "authtoken": "t"})
    client = conns.client("tickets_main")
    client.get("/apikey/echo")
    conns.connect_static("tickets_main", {"X-Api-Key": "key-2", "account": "a", "authtoken": "t"})
    client.get("/apikey/echo")  # the same client, no new client() call
    assert conns.client("tickets_main") is client
    assert _keys_sent(provider) == ["key-1", "key-2"]


def test_an_oauth2_reconnect_and_a_revoke_apply_at_the_next_request(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = _connected(make, provider)
    client = conns.client("acme_crm")
    assert client.get(f"{provider.url}/api/echo").status_code == 200
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))  # a new grant
    assert client.get(f"{provider.url}/api/echo").status_code == 200
    first, second = (call["authorization"] for call in provider.state.api_calls)
    assert first != second
    latest = store_of(conns).load("acme_crm").access_token.get_secret_value()
    assert second == f"Bearer {latest}"
    store_of(conns).mark("acme_crm", "", TokenStatus.NEEDS_RECONNECT, "invalid_grant")
    with pytest.raises(NeedsReconnectError):
        client.get(f"{provider.url}/api/echo")  # refused before anything is sent
    assert len(provider.state.api_calls) == 2


def test_a_changed_configuration_builds_a_new_client(
    make: ConnectionsFactory, provider: FakeProvider, keep_alive_url: str, tmp_path: Path
) -> None:
    text = API_KEY_YAML.format(url=provider.url)
    conns = make(text, {"TK": "key-1", "TA": "tok-1"})
    before = conns.client("tickets_file")
    assert conns.client("tickets_file") is before
    # The connections file reloaded with another base URL: new spec objects.
    moved = text.replace(f"base_url: {provider.url}", f"base_url: {keep_alive_url}")
    (tmp_path / "moved.yml").write_text(moved)
    conns.config = load_config(tmp_path / "moved.yml", {"TK": "key-1", "TA": "tok-1"})
    after = conns.client("tickets_file")
    assert after is not before
    assert str(after.base_url).rstrip("/") == keep_alive_url
    assert after.get("/anything").status_code == 200


def test_closing_by_a_caller_leaves_the_shared_client_usable(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(API_KEY_YAML.format(url=provider.url), {"TK": "key-1", "TA": "tok-1"})
    client = conns.client("tickets_file")
    with client:
        client.get("/apikey/echo")
    client.close()
    with SdpClient(conns.client("tickets_file"), f"{provider.url}/api/v3"):
        pass  # SdpClient.__exit__ closes the client it was given
    with conns.client("tickets_file") as again:
        assert again is client
        assert again.get("/apikey/echo").status_code == 200
    assert not client.is_closed
    # Nor can a caller reconfigure it for everyone else.
    for name, value in (("headers", {}), ("auth", None), ("base_url", "http://x")):
        with pytest.raises(AttributeError, match="shared"):
            setattr(client, name, value)
    conns.close()  # the process's pool closed: the next use opens a new one
    assert conns.client("tickets_file").get("/apikey/echo").status_code == 200


def test_the_shared_client_keeps_no_cookies(
    make: ConnectionsFactory, provider: FakeProvider, keep_alive_url: str
) -> None:
    conns = make(HEADER_KEY_YAML.format(url=keep_alive_url), {"TK": "key-1"})
    with httpx.Client(base_url=keep_alive_url) as plain:  # what a client would keep
        plain.get("/set-cookie")
        assert plain.get("/cookies").json() == {"cookie": "session=abc"}
    client = conns.client("plain")
    assert client.get("/set-cookie").status_code == 200
    assert client.get("/cookies").json() == {"cookie": None}


def test_answers_are_masked_with_the_current_stored_secrets(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = _connected(make, provider)
    client = conns.client("acme_crm")
    refresh_token = store_of(conns).load("acme_crm").refresh_token.get_secret_value()
    echoed = client.get(f"{provider.url}/apikey/echo", params={"say": refresh_token}).json()
    assert echoed["args"]["say"] == "***"
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))  # new tokens
    newer = store_of(conns).load("acme_crm").refresh_token.get_secret_value()
    assert newer != refresh_token
    echoed = client.get(f"{provider.url}/apikey/echo", params={"say": newer}).json()
    assert echoed["args"]["say"] == "***"
    assert newer in conns.known_secrets("acme_crm")


def test_threads_share_the_client_each_with_the_right_credentials(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(API_KEY_YAML.format(url=provider.url), {"TK": "key-1", "TA": "tok-1"})
    statuses: list[int] = []
    clients: set[int] = set()

    def step() -> None:
        for _ in range(5):
            with conns.client("tickets_file") as client:
                clients.add(id(client))
                statuses.append(client.get("/apikey/echo").status_code)

    threads = [threading.Thread(target=step) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * 20
    assert len(clients) == 1
    assert _keys_sent(provider) == ["key-1"] * 20


def _in_child(conns: Any, parent_id: int, results: Any) -> None:
    # The parent's pooled database connections stay the parent's (SQLAlchemy's fork rule).
    sessions_of(conns).kw["bind"].dispose(close=False)
    client = conns.client("tickets_file")
    results.put((id(client) != parent_id, client.get("/apikey/echo").status_code))


def test_a_forked_child_builds_its_own_client(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(API_KEY_YAML.format(url=provider.url), {"TK": "key-1", "TA": "tok-1"})
    parent = conns.client("tickets_file")
    assert parent.get("/apikey/echo").status_code == 200  # the parent's pool is open
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_in_child, args=(conns, id(parent), results))
    child.start()
    outcome = results.get(timeout=60)
    child.join(timeout=30)
    assert outcome == (True, 200)
    assert parent.get("/apikey/echo").status_code == 200  # the parent's is untouched


def test_the_store_decodes_a_row_again_only_when_it_changed(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = _connected(make, provider)
    store = store_of(conns)
    first = store.load("acme_crm")
    assert store.load("acme_crm") is first  # unchanged row: the decoded record is reused
    assert first is not None
    assert first.access_token is not None
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))
    second = store.load("acme_crm")
    assert second is not first
    assert second is not None
    assert second.access_token is not None
    assert second.access_token.get_secret_value() != first.access_token.get_secret_value()
    assert second.access_token.get_secret_value() in second.secret_values
    assert first.access_token.get_secret_value() not in second.secret_values
    store.mark("acme_crm", "", TokenStatus.REVOKED, "revoked by an admin")
    third = store.load("acme_crm")
    assert third is not None
    assert third.status == TokenStatus.REVOKED
    assert third.access_token is None
    assert third.secret_values == frozenset()


class _Plain(BaseHTTPRequestHandler):
    """Answers every GET; ``/set-cookie`` sets one, ``/cookies`` says what came back."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = httpx.Response(200, json={"cookie": self.headers.get("Cookie")}).content
        cookie = (
            {"Set-Cookie": "session=abc; Path=/"} if self.path.startswith("/set-cookie") else {}
        )
        send_json(self, body, cookie)

    do_POST = do_GET  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def keep_alive_url() -> Iterator[str]:
    """Another loopback server (a second host for the connection to move to)."""
    with serving_handler(_Plain) as url:
        yield url


def test_a_request_right_after_the_lease_uses_the_lease_read_unless_credentials_changed(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = _connected(make, provider)
    reads: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "FROM connection_tokens" in statement:
            reads.append(statement)

    event.listen(sessions_of(conns).kw["bind"], "before_cursor_execute", seen)
    with conns.client("acme_crm") as client:  # a step: the lease reads the row once
        assert client.get(f"{provider.url}/api/echo").status_code == 200
    assert len(reads) == 1
    reads.clear()
    with conns.client("acme_crm") as client:
        conns.complete_callback(connect_via_browser(conns, "acme_crm"))  # a reconnect
        assert client.get(f"{provider.url}/api/echo").status_code == 200
        assert client.get(f"{provider.url}/api/echo").status_code == 200  # not primed
    assert len(reads) >= 3  # the lease, the request after the write, the next request
    sent = [call["authorization"] for call in provider.state.api_calls[-2:]]
    latest = store_of(conns).load("acme_crm")
    assert latest is not None
    assert latest.access_token is not None
    assert sent == [f"Bearer {latest.access_token.get_secret_value()}"] * 2
