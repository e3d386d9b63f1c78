"""Refresh: ahead of expiry, after a 401, rotation, failures, and one refresh across processes."""

from __future__ import annotations

import multiprocessing
from typing import Any

import httpx
import pytest

from connections import (
    ConnectionState,
    NeedsReconnectError,
    NotConnectedError,
    TransientTokenError,
)
from tests.connections.conftest import (
    ConnectionsFactory,
    FakeProvider,
    Setup,
    build_connections,
    connect_via_browser,
    oauth2_yaml,
)


def connected(make: ConnectionsFactory, provider: FakeProvider, **kwargs: Any) -> Any:
    conns = make(oauth2_yaml(provider.url), **kwargs)
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))
    return conns


def stored(conns: Any) -> Any:
    return conns._store.load("acme_crm")


def test_refresh_without_rotation_keeps_the_old_refresh_token(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    provider.state.expires_in = 100  # inside the 300 s margin: refreshed before use
    conns = connected(make, provider)
    before = stored(conns)
    with conns.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 200
    after = stored(conns)
    assert provider.state.refresh_calls == 1
    assert after.access_token != before.access_token
    assert after.refresh_token == before.refresh_token  # the provider sent none


def test_refresh_with_rotation_stores_the_new_refresh_token(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    provider.state.rotate_refresh = True
    provider.state.expires_in = 100
    conns = connected(make, provider)
    before = stored(conns)
    with conns.client("acme_crm") as client:
        client.get(f"{provider.url}/api/echo")
        client.get(f"{provider.url}/api/echo")  # the rotated token works again
    after = stored(conns)
    assert provider.state.refresh_calls == 2
    assert after.refresh_token != before.refresh_token
    assert after.refresh_token.get_secret_value() in provider.state.refresh_tokens


def test_ahead_of_expiry_margin(make: ConnectionsFactory, provider: FakeProvider) -> None:
    provider.state.expires_in = 200
    conns = connected(make, provider, refresh_margin=60)
    with conns.client("acme_crm") as client:
        client.get(f"{provider.url}/api/echo")
    assert provider.state.refresh_calls == 0  # 200 s left, margin 60 s
    provider.state.expires_in = 3600
    tight = make(refresh_margin=300)
    with tight.client("acme_crm") as client:
        client.get(f"{provider.url}/api/echo")
        client.get(f"{provider.url}/api/echo")
    assert provider.state.refresh_calls == 1  # refreshed once, then the new one is cached


def test_401_refreshes_once_and_retries(make: ConnectionsFactory, provider: FakeProvider) -> None:
    conns = connected(make, provider)
    provider.state.access_tokens.clear()  # the resource server forgets the token
    with conns.client("acme_crm") as client:
        response = client.get(f"{provider.url}/api/echo")
    assert response.status_code == 200
    assert provider.state.refresh_calls == 1
    assert len(provider.state.api_calls) == 2


def test_401_after_refresh_is_returned_not_looped(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = connected(make, provider)
    provider.state.access_tokens.clear()
    original_issue = provider.state.issue

    def issue_unknown() -> dict[str, Any]:
        issued = original_issue()
        provider.state.access_tokens.discard(issued["access_token"])
        return issued

    provider.state.issue = issue_unknown  # type: ignore[method-assign]
    with conns.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 401
    assert provider.state.refresh_calls == 1


@pytest.mark.parametrize("zoho", [False, True], ids=["http-400", "zoho-http-200"])
def test_invalid_grant_marks_needs_reconnect(
    make: ConnectionsFactory, provider: FakeProvider, zoho: bool
) -> None:
    provider.state.expires_in = 10
    conns = connected(make, provider)
    provider.state.zoho = zoho
    provider.state.refresh_error = "invalid_grant"
    with pytest.raises(NeedsReconnectError) as caught, conns.client("acme_crm") as client:
        client.get(f"{provider.url}/api/echo")
    assert str(caught.value) == (
        "connection 'acme_crm' needs to be reconnected: invalid_grant — "
        "open /connections/acme_crm/connect"
    )
    status = conns.status("acme_crm")
    assert status.state == ConnectionState.NEEDS_RECONNECT
    calls = provider.state.refresh_calls
    with pytest.raises(NeedsReconnectError):
        conns.client("acme_crm")  # every use fails, without asking the provider again
    assert provider.state.refresh_calls == calls


@pytest.mark.parametrize(
    ("status", "error"),
    [(503, None), (None, "Access Denied")],
    ids=["http-503", "zoho-too-many-requests"],
)
def test_transient_token_failures_raise_a_distinct_error(
    make: ConnectionsFactory, provider: FakeProvider, status: int | None, error: str | None
) -> None:
    provider.state.expires_in = 10
    conns = connected(make, provider)
    provider.state.zoho = True
    provider.state.refresh_status = status
    # Zoho's rate limit: HTTP 200 {"error": "Access Denied", "error_description": "You have
    # made too many requests continuously. Please try again after some time."}
    provider.state.refresh_error = error
    provider.state.refresh_error_description = "You have made too many requests continuously."
    with pytest.raises(TransientTokenError), conns.client("acme_crm") as client:
        client.get(f"{provider.url}/api/echo")
    # Not marked: the next try may work.
    provider.state.refresh_status = None
    provider.state.refresh_error = None
    with conns.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 200


def test_unreachable_token_endpoint_is_transient(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    provider.state.expires_in = 10
    conns = connected(make, provider)
    dead = make(
        oauth2_yaml("http://127.0.0.1:9").replace(
            "authorize_url: http://127.0.0.1:9", f"authorize_url: {provider.url}"
        )
    )
    with (
        pytest.raises(TransientTokenError, match="could not be sent"),
        dead.client("acme_crm") as client,
    ):
        client.get(f"{provider.url}/api/echo")
    assert conns.status("acme_crm").state == ConnectionState.CONNECTED


@pytest.mark.parametrize("client_auth", ["basic", "post"])
def test_client_credentials_refetch_on_expiry(
    make: ConnectionsFactory, provider: FakeProvider, client_auth: str
) -> None:
    provider.state.expires_in = 100  # always inside the margin: fetched again each use
    conns = make(
        oauth2_yaml(provider.url, grant_type="client_credentials", client_auth=client_auth)
    )
    assert conns.status("acme_crm").state == ConnectionState.NOT_CONNECTED
    with conns.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 200
        assert client.get(f"{provider.url}/api/echo").status_code == 200
    assert provider.state.cc_calls == 2
    assert provider.state.cc_auth_methods == [client_auth, client_auth]
    assert provider.state.refresh_calls == 0
    provider.state.expires_in = 3600
    with conns.client("acme_crm") as client:
        client.get(f"{provider.url}/api/echo")
        client.get(f"{provider.url}/api/echo")
    assert provider.state.cc_calls == 3  # a long-lived token is cached


def test_bootstrap_refresh_token_from_env(make: ConnectionsFactory, provider: FakeProvider) -> None:
    seeded = provider.state.issue()["refresh_token"]
    text = oauth2_yaml(provider.url).replace(
        "    per_user: false\n", "    per_user: false\n    refresh_token: ${ACME_REFRESH}\n"
    )
    from tests.connections.conftest import ENV

    conns = make(text, {**ENV, "ACME_REFRESH": seeded})
    status = conns.status("acme_crm")  # bootstraps on first look
    assert status.state == ConnectionState.CONNECTED
    assert provider.state.refresh_calls == 1
    with conns.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 200
    assert provider.state.refresh_calls == 1  # cached, not refreshed per use
    again = make(text, {**ENV, "ACME_REFRESH": seeded})
    again.status("acme_crm")
    assert provider.state.refresh_calls == 1  # the same token is not bootstrapped twice


def test_bootstrap_with_a_bad_token_needs_reconnect(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(oauth2_yaml(provider.url))
    with pytest.raises(NeedsReconnectError, match="invalid_grant"):
        conns.bootstrap_refresh_token("acme_crm", "rt-not-known")
    with pytest.raises(NotConnectedError):
        make(oauth2_yaml(provider.url)).bootstrap_refresh_token("acme_crm")


# ---- two processes, one refresh ---------------------------------------------------------


def _use_connection(setup: Setup, url: str, start: Any, results: Any) -> None:
    conns = build_connections(setup)
    conns.status("acme_crm")  # warm up: imports, key derivation, DB connection
    start.wait(60)  # a barrier: both processes call at the same moment
    try:
        with conns.client("acme_crm") as client:
            results.put(client.get(f"{url}/api/echo").status_code)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put(repr(exc))


def test_two_processes_one_refresh(
    make: ConnectionsFactory, provider: FakeProvider, setup: Setup
) -> None:
    provider.state.refresh_delay = 0.5  # both processes arrive while the refresh runs
    conns = connected(make, provider)
    provider.state.expires_in = 3600
    # Expire the stored token now: the next use in each process wants a refresh.
    record = stored(conns)
    conns._store.save(
        "acme_crm",
        "",
        service=record.service,
        auth=record.auth,
        grant_type=record.grant_type,
        scopes=record.scopes,
        secrets={
            "access_token": record.access_token.get_secret_value(),
            "refresh_token": record.refresh_token.get_secret_value(),
        },
        expires_at=record.connected_at,
        meta=record.meta,
    )
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(3)
    results = context.Queue()
    workers = [
        context.Process(target=_use_connection, args=(setup, provider.url, start, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    start.wait(60)
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == [200, 200]
    assert provider.state.refresh_calls == 1


def test_transport_errors_to_the_resource_are_httpx_errors(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = connected(make, provider)
    with pytest.raises(httpx.ConnectError), conns.client("acme_crm") as client:
        client.get("http://127.0.0.1:9/api/echo")
