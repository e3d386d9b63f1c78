"""Each auth type puts its credentials where the service says, checked by a fake server."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from connections import ConnectionsError, ConnectionState, NotConnectedError
from tests.connections.conftest import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    ConnectionsFactory,
    FakeProvider,
    connect_via_browser,
    oauth2_yaml,
)


@pytest.mark.parametrize("placement", ["header", "query"])
def test_oauth2_token_placement(
    make: ConnectionsFactory, provider: FakeProvider, placement: str
) -> None:
    conns = make(oauth2_yaml(provider.url, token_placement=placement))
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))
    with conns.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 200
    call = provider.state.api_calls[-1]
    if placement == "header":
        assert call["authorization"].startswith("Bearer at-")
        assert "access_token" not in call["args"]
    else:
        assert call["authorization"] == ""
        assert call["args"]["access_token"].startswith("at-")


API_KEY_YAML = """
services:
  tickets:
    name: Tickets
    auth: api_key
    base_url: {url}
    params:
      - {{name: X-Api-Key, display_name: API key, placement: header}}
      - {{name: account, display_name: Account, placement: query}}
      - {{name: authtoken, display_name: Auth token, placement: form}}
connections:
  tickets_main:
    service: tickets
  tickets_file:
    service: tickets
    values: {{X-Api-Key: "${{TK}}", account: acme, authtoken: "${{TA}}"}}
"""


def test_api_key_placements(make: ConnectionsFactory, provider: FakeProvider) -> None:
    conns = make(API_KEY_YAML.format(url=provider.url), {"TK": "key-1", "TA": "tok-1"})
    with pytest.raises(NotConnectedError, match="not connected"):
        conns.client("tickets_main")
    with pytest.raises(ConnectionsError, match="missing account"):
        conns.connect_static("tickets_main", {"X-Api-Key": "k", "authtoken": "t"})
    status = conns.connect_static(
        "tickets_main", {"X-Api-Key": "key-9", "account": "acme", "authtoken": "tok-9"}
    )
    assert status.state == ConnectionState.CONNECTED
    with conns.client("tickets_main") as client:
        echoed = client.post("/apikey/echo?x=1", data={"note": "hi"}).json()
    received = provider.state.apikey_calls[-1]  # what the service got
    assert received["headers"]["x-api-key"] == "key-9"
    assert received["args"] == {"x": "1", "account": "acme"}
    assert received["form"] == {"note": "hi", "authtoken": "tok-9"}
    # The echo comes back with the connection's secrets masked.
    assert echoed["headers"]["x-api-key"] == "***"
    assert echoed["form"] == {"note": "hi", "authtoken": "***"}
    with conns.client("tickets_file") as client:
        client.get("/apikey/echo")
    received = provider.state.apikey_calls[-1]
    assert received["headers"]["x-api-key"] == "key-1"
    assert received["form"] == {"authtoken": "tok-1"}  # a body made for the form param
    with pytest.raises(ConnectionsError, match="form body"), conns.client("tickets_main") as client:
        client.post("/apikey/echo", json={"a": 1})


def test_pagerduty_style_formatted_header(make: ConnectionsFactory, provider: FakeProvider) -> None:
    # Credentials go only to a connection's own hosts: the fake provider is declared one.
    conns = make(
        "connections:\n  pd:\n    service: pagerduty\n    values: {Authorization: abc}\n"
        "    hosts: [127.0.0.1]\n"
    )
    with conns.client("pd") as client:
        client.get(f"{provider.url}/apikey/echo")
    assert provider.state.apikey_calls[-1]["headers"]["authorization"] == "Token token=abc"
    assert str(client.base_url) == "https://api.pagerduty.com"


def test_basic(make: ConnectionsFactory, provider: FakeProvider) -> None:
    conns = make(
        "services:\n  legacy:\n    auth: basic\n    hosts: [127.0.0.1]\n"
        "connections:\n  legacy_main:\n    service: legacy\n"
    )
    conns.connect_static("legacy_main", {"username": "ops", "password": "wrong"})
    with conns.client("legacy_main") as client:
        assert client.get(f"{provider.url}/basic/echo").status_code == 401
    conns.connect_static("legacy_main", {"username": "ops", "password": "pa55-word"})
    with conns.client("legacy_main") as client:
        assert client.get(f"{provider.url}/basic/echo").status_code == 200


OAUTH1_YAML = """
services:
  old_api:
    name: Old API
    auth: oauth1
    request_token_url: {url}/oauth1/request_token
    authorize_url: {url}/oauth1/authorize
    access_token_url: {url}/oauth1/access_token
    consumer_key: ${{OK}}
    consumer_secret: ${{OS}}
connections:
  old:
    service: old_api
"""


def test_oauth1_three_legged_and_signed_calls(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(OAUTH1_YAML.format(url=provider.url), {"OK": CONSUMER_KEY, "OS": CONSUMER_SECRET})
    url = conns.authorize_url("old")  # signed request-token call happened here
    assert provider.state.oauth1_verified == 1
    assert url.startswith(f"{provider.url}/oauth1/authorize?oauth_token=rq-")
    response = httpx.get(url, follow_redirects=False)
    callback = dict(parse_qsl(urlsplit(response.headers["Location"]).query))
    assert set(callback) == {"oauth_token", "oauth_verifier"}
    assert conns.complete_callback(callback) == "old"
    assert provider.state.oauth1_verified == 2
    assert conns.status("old").state == ConnectionState.CONNECTED
    with conns.client("old") as client:
        assert client.get(f"{provider.url}/oauth1/api?q=a%20b").status_code == 200
        assert client.post(f"{provider.url}/oauth1/api", data={"x": "1"}).json()["form"] == {
            "x": "1"
        }
    assert provider.state.oauth1_verified == 4
    wrong = make(OAUTH1_YAML.format(url=provider.url), {"OK": CONSUMER_KEY, "OS": "not-it"})
    with wrong.client("old") as client:
        assert client.get(f"{provider.url}/oauth1/api").status_code == 401
