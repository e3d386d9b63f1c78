"""The OAuth 2.0 code flow: PKCE S256, single-use state, Zoho callbacks and errors."""

from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest
from sqlalchemy import update

from connections import (
    Connections,
    ConnectionState,
    OAuthCallbackError,
    UnsupportedOperationError,
)
from connections.store import ConnectionAuthState
from tests.connections.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    ConnectionsFactory,
    FakeProvider,
    connect_via_browser,
    oauth2_yaml,
    sessions_of,
)


def test_code_flow_with_pkce_connects(make: ConnectionsFactory, provider: FakeProvider) -> None:
    conns = make(oauth2_yaml(provider.url))
    assert conns.status("acme_crm").state == ConnectionState.NOT_CONNECTED
    url = conns.authorize_url("acme_crm")
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/connections/callback"]
    assert query["scope"] == ["contacts.read notes.write"]
    assert "code_verifier" not in query
    callback = connect_via_browser(conns, "acme_crm")
    assert conns.complete_callback(callback) == "acme_crm"
    assert provider.state.code_calls == 1  # the fake checked the S256 challenge
    status = conns.status("acme_crm")
    assert status.state == ConnectionState.CONNECTED
    with conns.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").json()["ok"] is True


def test_pkce_verifier_must_match(make: ConnectionsFactory, provider: FakeProvider) -> None:
    conns = make(oauth2_yaml(provider.url))
    callback = connect_via_browser(conns, "acme_crm")
    # Another attempt's code, with this attempt's state: the fake's PKCE check fails.
    other = connect_via_browser(conns, "acme_crm")
    with pytest.raises(OAuthCallbackError, match="refused the code"):
        conns.complete_callback({"state": callback["state"], "code": other["code"]})


def test_state_mismatch_is_refused(make: ConnectionsFactory, provider: FakeProvider) -> None:
    conns = make(oauth2_yaml(provider.url))
    callback = connect_via_browser(conns, "acme_crm")
    with pytest.raises(OAuthCallbackError, match="mismatch"):
        conns.complete_callback({"state": "forged-state", "code": callback["code"]})
    with pytest.raises(OAuthCallbackError, match="no state"):
        conns.complete_callback({"code": callback["code"]})


def test_replayed_callback_is_refused(make: ConnectionsFactory, provider: FakeProvider) -> None:
    conns = make(oauth2_yaml(provider.url))
    callback = connect_via_browser(conns, "acme_crm")
    conns.complete_callback(callback)
    with pytest.raises(OAuthCallbackError, match="replayed"):
        conns.complete_callback(callback)
    assert provider.state.code_calls == 1


def test_expired_state_is_refused(make: ConnectionsFactory, provider: FakeProvider) -> None:
    conns = make(oauth2_yaml(provider.url))
    callback = connect_via_browser(conns, "acme_crm")
    from datetime import UTC, datetime, timedelta

    with sessions_of(conns).begin() as session:
        session.execute(
            update(ConnectionAuthState).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with pytest.raises(OAuthCallbackError, match="expired"):
        conns.complete_callback(callback)
    assert provider.state.code_calls == 0


def test_provider_error_on_callback(make: ConnectionsFactory, provider: FakeProvider) -> None:
    conns = make(oauth2_yaml(provider.url))
    callback = connect_via_browser(conns, "acme_crm")
    with pytest.raises(OAuthCallbackError, match="refused connection 'acme_crm': access_denied"):
        conns.complete_callback({"state": callback["state"], "error": "access_denied"})


def zoho_yaml(url: str, extra: str = "") -> str:
    return f"""
connections:
  sdp:
    name: ServiceDesk Plus
    service: sdp
    data_centre: us
    portal: itdesk
    accounts_url: {url}
    client_id: ${{SDP_CLIENT_ID}}
    client_secret: ${{SDP_CLIENT_SECRET}}
    scopes: [SDPOnDemand.requests.ALL, SDPOnDemand.setup.READ]
{extra}"""


ZOHO_ENV = {"SDP_CLIENT_ID": CLIENT_ID, "SDP_CLIENT_SECRET": CLIENT_SECRET}


def test_zoho_flow_comma_scopes_offline_and_sdp_endpoint(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(zoho_yaml(provider.url), ZOHO_ENV)
    url = conns.authorize_url("sdp")
    assert url.startswith(f"{provider.url}/oauth/v2/auth?")
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == ["SDPOnDemand.requests.ALL,SDPOnDemand.setup.READ"]
    assert query["access_type"] == ["offline"]
    assert query["prompt"] == ["consent"]
    endpoint = conns.sdp_endpoint("sdp")
    assert endpoint.api_base == "https://sdpondemand.manageengine.com/app/itdesk/api/v3"
    assert endpoint.accept == "application/vnd.manageengine.sdp.v3+json"
    assert not endpoint.onprem


def test_zoho_callback_accounts_server_must_be_known(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(zoho_yaml(provider.url), ZOHO_ENV)
    url = conns.authorize_url("sdp")
    state = parse_qs(urlsplit(url).query)["state"][0]
    with pytest.raises(OAuthCallbackError, match="not a known Zoho accounts server"):
        conns.complete_callback(
            {
                "state": state,
                "code": "c",
                "location": "eu",
                "accounts-server": "https://evil.example",
            }
        )


def test_unsupported_auth_types_have_no_authorize_url(make: ConnectionsFactory) -> None:
    conns = make("connections:\n  pd:\n    service: pagerduty\n")
    with pytest.raises(UnsupportedOperationError, match="api_key"):
        conns.authorize_url("pd")


def test_plus_delimiter_joins_with_literal_plus(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    text = oauth2_yaml(provider.url).replace("scope_delimiter: space", "scope_delimiter: plus")
    conns = make(text)
    url = conns.authorize_url("acme_crm")
    assert "&scope=contacts.read+notes.write" in url


def test_zoho_callback_location_and_errors_with_http_200(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    provider.state.zoho = True
    provider.state.callback_extra = {"location": "eu", "accounts-server": provider.url}
    conns = make(zoho_yaml(provider.url), ZOHO_ENV)
    callback = connect_via_browser(conns, "sdp")
    assert conns.complete_callback(callback) == "sdp"
    # The token reply's api_domain is a zohoapis host, not SDP: the callback's DC wins.
    assert conns.sdp_endpoint("sdp").api_base == (
        "https://sdpondemand.manageengine.eu/app/itdesk/api/v3"
    )
    # A used code again: Zoho answers {"error": "invalid_code"} with HTTP 200.
    second = connect_via_browser(conns, "sdp")
    with pytest.raises(OAuthCallbackError, match="invalid_code"):
        conns.complete_callback({**second, "code": callback["code"]})
    with conns.client("sdp") as client:
        response = client.get(f"{provider.url}/api/echo")
    assert response.json()["prefix"] == "Zoho-oauthtoken"
    assert str(client.base_url) == "https://sdpondemand.manageengine.eu/app/itdesk/api/v3/"


def test_begin_connect_returns_the_key_the_callback_brings_back(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(oauth2_yaml(provider.url))
    attempt = conns.begin_connect("acme_crm")
    assert parse_qs(urlsplit(attempt.url).query)["state"] == [attempt.key]
    redirect = httpx.get(attempt.url, follow_redirects=False).headers["Location"]
    back = dict(parse_qsl(urlsplit(redirect).query))
    assert Connections.callback_key(back) == attempt.key
    assert Connections.callback_key({"oauth_token": "rq-1", "oauth_verifier": "v"}) == "rq-1"
    assert Connections.callback_key({"code": "c"}) is None
    assert conns.complete_callback(back) == "acme_crm"
