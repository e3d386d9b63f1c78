"""Credentials only travel over HTTPS; plain HTTP is allowed to loopback only."""

from __future__ import annotations

import httpx
import pytest

from connections import InsecureURLError
from connections.transport import check_url, is_loopback
from tests.connections.conftest import ConnectionsFactory, FakeProvider


@pytest.mark.parametrize(
    "url",
    ["http://example.com/x", "http://10.0.0.1/", "http://[fe80::1]/", "ftp://example.com/"],
)
def test_non_https_remote_urls_are_refused(url: str) -> None:
    with pytest.raises(InsecureURLError, match="only use https"):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/",
        "http://127.0.0.1:1/",
        "http://127.8.9.1/",
        "http://localhost/",
        "http://[::1]:80/",
    ],
)
def test_https_and_loopback_are_allowed(url: str) -> None:
    check_url(url)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert not is_loopback("127.example.com")


def test_client_refuses_plain_http_before_sending(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(
        "connections:\n  pd:\n    service: pagerduty\n    values: {Authorization: key-123}\n"
        "    hosts: [127.0.0.1]\n"
    )
    with conns.client("pd") as client:
        with pytest.raises(InsecureURLError) as caught:
            client.get("http://example.com/incidents?token=abc")
        assert "abc" not in str(caught.value)
        assert client.get(f"{provider.url}/apikey/echo").status_code == 200
        # A redirect to plain http is checked too: every request passes the transport.
        with pytest.raises(InsecureURLError, match=r"example\.com"):
            client.get(
                f"{provider.url}/redirect",
                params={"to": "http://example.com/steal"},
                follow_redirects=True,
            )
    assert isinstance(client.timeout, httpx.Timeout)
    assert client.timeout.read == 30
