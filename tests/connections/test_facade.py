"""The facade: status, list, revoke, delete, per-user connections, scope changes, SDP."""

from __future__ import annotations

import pytest

from connections import (
    ConnectionInUseError,
    ConnectionRevokedError,
    ConnectionState,
    NotConfiguredError,
    NotConnectedError,
    UnknownConnectionError,
    UnsupportedOperationError,
)
from tests.connections.conftest import (
    ConnectionsFactory,
    FakeProvider,
    connect_via_browser,
    oauth2_yaml,
    store_of,
)


def test_not_configured_loads_and_says_which_variable(make: ConnectionsFactory) -> None:
    conns = make(
        "connections:\n  sdp:\n    service: sdp\n    client_id: ${SDP_CLIENT_ID}\n"
        "    client_secret: ${SDP_CLIENT_SECRET}\n  pd:\n    service: pagerduty\n",
        {"SDP_CLIENT_SECRET": "x"},
    )
    status = conns.status("sdp")
    assert status.state == ConnectionState.NOT_CONFIGURED
    assert status.message == "not configured: SDP_CLIENT_ID is not set"
    with pytest.raises(NotConfiguredError, match="SDP_CLIENT_ID is not set"):
        conns.client("sdp")
    assert [s.link_name for s in conns.list()] == ["pd", "sdp"]
    assert conns.status("pd").state == ConnectionState.NOT_CONNECTED


def test_unknown_link_name_suggests(make: ConnectionsFactory) -> None:
    conns = make("connections:\n  pagerduty_main:\n    service: pagerduty\n")
    with pytest.raises(UnknownConnectionError, match="did you mean 'pagerduty_main'"):
        conns.client("pagerduty_mian")


def test_revoke_calls_provider_and_forgets(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(oauth2_yaml(provider.url))
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))
    refresh = store_of(conns).load("acme_crm").refresh_token.get_secret_value()
    outcome = conns.revoke("acme_crm")
    assert outcome.provider_revoked is True
    assert provider.state.revoked == [refresh]
    status = conns.status("acme_crm")
    assert status.state == ConnectionState.REVOKED
    assert "revoked by an admin" in status.message
    with pytest.raises(ConnectionRevokedError, match="/connections/acme_crm/connect"):
        conns.client("acme_crm")
    assert store_of(conns).load("acme_crm").refresh_token is None
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))  # reconnect works
    assert conns.status("acme_crm").connected


def test_delete_refused_while_rules_use_it(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(oauth2_yaml(provider.url))
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))
    with pytest.raises(ConnectionInUseError) as caught:
        conns.delete("acme_crm", {"acme_crm": ["crm-sync", "vip-note"], "other": ["x"]})
    assert "crm-sync, vip-note" in str(caught.value)
    assert conns.status("acme_crm").connected
    conns.delete("acme_crm", {"other": ["x"]})
    assert store_of(conns).load("acme_crm") is None


def test_scope_change_revokes(make: ConnectionsFactory, provider: FakeProvider) -> None:
    conns = make(oauth2_yaml(provider.url))
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))
    wider = make(oauth2_yaml(provider.url, scopes="[contacts.read, notes.write, deals.read]"))
    status = wider.status("acme_crm")
    assert status.state == ConnectionState.REVOKED
    assert "scopes changed (added deals.read)" in status.message
    with pytest.raises(ConnectionRevokedError, match="scopes changed"):
        wider.client("acme_crm")
    # Going back to the old scopes does not bring the tokens back.
    assert make(oauth2_yaml(provider.url)).status("acme_crm").state == ConnectionState.REVOKED
    wider.complete_callback(connect_via_browser(wider, "acme_crm"))
    assert wider.status("acme_crm").connected


def test_per_user_connections(make: ConnectionsFactory, provider: FakeProvider) -> None:
    conns = make(oauth2_yaml(provider.url, per_user="true"))
    status = conns.status("acme_crm")
    assert status.state == ConnectionState.NOT_CONNECTED
    assert "each user" in status.message
    with pytest.raises(NotConnectedError, match="credentials of the login user"):
        conns.client("acme_crm")
    with pytest.raises(NotConnectedError, match=r"user ann@example\.com has not connected"):
        conns.client("acme_crm", user="ann@example.com")
    conns.complete_callback(connect_via_browser(conns, "acme_crm", user="Ann@Example.com"))
    with conns.client("acme_crm", user="ann@example.com") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 200
    with pytest.raises(NotConnectedError, match=r"bob@example\.com"):
        conns.client("acme_crm", user="bob@example.com")
    conns.complete_callback(connect_via_browser(conns, "acme_crm", user="bob@example.com"))
    assert conns.status("acme_crm").users_connected == 2
    tokens = {
        store_of(conns).load("acme_crm", u).access_token.get_secret_value()
        for u in ("ann@example.com", "bob@example.com")
    }
    assert len(tokens) == 2  # each user has their own token
    conns.revoke("acme_crm", user="bob@example.com")
    assert conns.status("acme_crm", user="bob@example.com").state == ConnectionState.REVOKED
    assert conns.status("acme_crm", user="ann@example.com").connected


def test_sdp_endpoints(make: ConnectionsFactory) -> None:
    conns = make(
        """
connections:
  onprem:
    service: sdp_onprem
    base_url: https://sdp.corp.example:8080
  cloud_in:
    service: sdp
    data_centre: in
    client_id: a
    client_secret: b
  custom_domain:
    service: sdp
    base_url: https://help.example.com
    portal: it
    client_id: a
    client_secret: b
  pd:
    service: pagerduty
"""
    )
    onprem = conns.sdp_endpoint("onprem")
    assert onprem.api_base == "https://sdp.corp.example:8080/api/v3"
    assert onprem.onprem
    assert conns.sdp_endpoint("cloud_in").api_base == "https://sdpondemand.manageengine.in/api/v3"
    assert conns.sdp_endpoint("custom_domain").api_base == "https://help.example.com/app/it/api/v3"
    with pytest.raises(UnsupportedOperationError):
        conns.sdp_endpoint("pd")
    store_of(conns).save(
        "cloud_in",
        "",
        service="sdp",
        auth="oauth2",
        grant_type="authorization_code",
        scopes=("SDPOnDemand.requests.ALL",),
        secrets={"access_token": "a", "refresh_token": "r"},
        expires_at=None,
        meta={"api_domain": "https://servicedeskplus.uk"},
    )
    assert conns.sdp_endpoint("cloud_in").api_base == "https://servicedeskplus.uk/api/v3"
    conns.connect_static("onprem", {"authtoken": "tech-key"})
    with conns.client("onprem") as client:
        assert str(client.base_url) == "https://sdp.corp.example:8080/api/v3/"
        assert client.headers["Accept"] == "application/vnd.manageengine.sdp.v3+json"
