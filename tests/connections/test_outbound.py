"""Outbound policy: credentials only to a connection's hosts; anonymous calls stay public."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from flask import Flask, Response, jsonify, redirect, request

from connections import load_config
from connections.config import ConnectionsConfigError
from connections.outbound import (
    AddressPolicy,
    BlockedAddressError,
    CredentialHostError,
    guarded_transport,
)
from connections.transport import HttpsOnlyTransport
from deskwire.settings import Settings
from tests.connections.conftest import ConnectionsFactory
from tests.wsgi_server import serving


@dataclass
class Seen:
    """What a loopback server was sent."""

    requests: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    app = Flask("outbound_target")

    @app.get("/echo")
    def echo() -> Response:
        seen.requests.append(dict(request.headers))
        return jsonify(ok=True)

    @app.get("/redirect")
    def elsewhere() -> Response:
        return redirect(request.args["to"])  # type: ignore[return-value]

    with serving(app) as base:
        yield base, seen


def anonymous(allow: list[str] | None = None) -> httpx.Client:
    """The client a step without a connection gets (as the worker builds it)."""
    policy = AddressPolicy.from_entries(allow or [])
    return httpx.Client(
        transport=HttpsOnlyTransport(guarded_transport(policy)), timeout=10, trust_env=False
    )


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.1", "private"),
        ("192.168.1.10", "private"),
        ("172.16.0.5", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("100.100.100.200", "not a public"),
        ("168.63.129.16", "metadata"),
        ("0.0.0.0", "private"),
        ("224.0.0.1", "not a public"),
    ],
)
def test_inside_addresses_are_refused(address: str, reason: str) -> None:
    refusal = AddressPolicy().refusal("host", ipaddress.ip_address(address))
    assert refusal is not None
    assert reason in refusal


def test_public_addresses_pass_and_the_allow_list_opens_others() -> None:
    policy = AddressPolicy.from_entries(["10.1.0.0/16", "intranet.example", " 127.0.0.1 "])
    assert policy.refusal("x", ipaddress.ip_address("93.184.216.34")) is None
    assert policy.refusal("x", ipaddress.ip_address("10.1.2.3")) is None
    assert policy.refusal("x", ipaddress.ip_address("10.2.0.1")) is not None
    assert policy.refusal("intranet.example", ipaddress.ip_address("10.9.9.9")) is None
    assert policy.refusal("x", ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal("x", ipaddress.ip_address("127.0.0.2")) is not None


def test_a_private_address_is_refused_before_connecting() -> None:
    """``https://10.0.0.1``: refused at once (no connect attempt, so no timeout)."""
    started = time.monotonic()
    with anonymous() as client, pytest.raises(BlockedAddressError) as caught:
        client.get("https://10.0.0.1/latest/meta-data/")
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert "10.0.0.1" in message
    assert "DESKWIRE_HTTP_ALLOW" in message


def test_metadata_address_is_refused() -> None:
    with anonymous() as client, pytest.raises(BlockedAddressError, match="link-local"):
        client.get("https://169.254.169.254/latest/meta-data/")


def test_plain_loopback_without_allowance_is_refused_and_nothing_is_sent(
    server: tuple[str, Seen],
) -> None:
    base, seen = server
    with anonymous() as client, pytest.raises(BlockedAddressError, match="loopback"):
        client.get(base + "/echo")
    assert seen.requests == []
    with anonymous(["127.0.0.1"]) as client:
        assert client.get(base + "/echo").json() == {"ok": True}
    assert len(seen.requests) == 1


def test_names_are_checked_after_dns_resolution(server: tuple[str, Seen]) -> None:
    base, seen = server
    by_name = base.replace("127.0.0.1", "localhost")
    with anonymous() as client, pytest.raises(BlockedAddressError, match=r"localhost \("):
        client.get(by_name + "/echo")
    assert seen.requests == []


def test_every_redirect_is_checked(server: tuple[str, Seen]) -> None:
    """Allowed by name, the first hop passes; its redirect to a bare address does not."""
    base, seen = server
    start = base.replace("127.0.0.1", "localhost")
    with anonymous(["localhost"]) as client:
        assert client.get(start + "/echo").status_code == 200
        with pytest.raises(BlockedAddressError, match=r"127\.0\.0\.1"):
            client.get(start + "/redirect", params={"to": base + "/echo"}, follow_redirects=True)
    assert len(seen.requests) == 1


def test_a_connection_sends_credentials_only_to_its_own_hosts(
    make: ConnectionsFactory, server: tuple[str, Seen]
) -> None:
    base, seen = server
    conns = make(
        "services:\n  tickets:\n    auth: api_key\n"
        "    params: [{name: X-Api-Key, display_name: Key, placement: header}]\n"
        f"    base_url: {base}\n"
        "connections:\n  tickets_main:\n    service: tickets\n"
        "    values: {X-Api-Key: TICKETS-API-KEY}\n"
    )
    elsewhere = base.replace("127.0.0.1", "localhost")
    with conns.client("tickets_main") as client:
        assert client.get("/echo").status_code == 200
        with pytest.raises(CredentialHostError) as caught:
            client.get(elsewhere + "/echo?key=x")
    message = str(caught.value)
    assert "tickets_main" in message
    assert "localhost" in message
    assert "TICKETS-API-KEY" not in message
    assert len(seen.requests) == 1  # the refused request never reached a server


def test_declared_hosts_extend_a_connection(
    make: ConnectionsFactory, server: tuple[str, Seen]
) -> None:
    base, seen = server
    conns = make(
        "connections:\n  pd:\n    service: pagerduty\n    values: {Authorization: abc}\n"
        "    hosts: [localhost]\n"
    )
    with conns.client("pd") as client:
        url = base.replace("127.0.0.1", "localhost") + "/echo"
        assert client.get(url).status_code == 200
        with pytest.raises(CredentialHostError, match=r"api\.pagerduty\.com, events\.pagerduty"):
            client.get(base + "/echo")
    assert seen.requests[0]["Authorization"] == "Token token=abc"


def test_hosts_must_be_host_names(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "connections.yml"
    path.write_text(
        "connections:\n  pd:\n    service: pagerduty\n    values: {Authorization: abc}\n"
        "    hosts: [https://x.example/path]\n"
    )
    with pytest.raises(ConnectionsConfigError, match="is not a host name"):
        load_config(path, {})


def test_the_allow_setting_is_a_comma_list() -> None:
    settings = Settings(http_allow="127.0.0.1, 10.0.0.0/8,intranet.example")
    assert settings.http_allow == ["127.0.0.1", "10.0.0.0/8", "intranet.example"]
    assert Settings().http_allow == []
