"""Refresh: ahead of expiry, after a 401, rotation, failures, and one refresh across processes."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connections import (
    ClientAuthError,
    ConnectionState,
    NeedsReconnectError,
    NotConnectedError,
    TransientTokenError,
)
from connections.refresh import lock_name
from connections.store import StoredToken, TokenStatus
from tests.connections.conftest import (
    ENV,
    ConnectionsFactory,
    FakeProvider,
    Setup,
    build_connections,
    connect_via_browser,
    oauth2_yaml,
    redis_of,
    store_of,
)
from tests.waiting import wait_until


def connected(make: ConnectionsFactory, provider: FakeProvider, **kwargs: Any) -> Any:
    conns = make(oauth2_yaml(provider.url), **kwargs)
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))
    return conns


def stored(conns: Any) -> Any:
    return store_of(conns).load("acme_crm")


def expire_now(conns: Any, *, in_seconds: float = 0) -> None:
    """Make the stored access token expired (or expire ``in_seconds`` from now), keeping
    the lifetime it was issued with: the next use in any process refreshes."""
    record = stored(conns)
    store_of(conns).save(
        "acme_crm",
        "",
        service=record.service,
        auth=record.auth,
        grant_type=record.grant_type,
        scopes=record.scopes,
        secrets={
            "access_token": record.access_token.get_secret_value(),
            "refresh_token": (
                record.refresh_token.get_secret_value() if record.refresh_token else None
            ),
        },
        expires_at=(
            datetime.now(UTC) + timedelta(seconds=in_seconds) if in_seconds else record.connected_at
        ),
        meta=record.meta,
    )


def always_401(provider: FakeProvider) -> None:
    """The API refuses every token, old and new (a wrong data centre or portal)."""
    provider.state.access_tokens.clear()
    original_issue = provider.state.issue

    def issue_unknown() -> dict[str, Any]:
        issued = original_issue()
        provider.state.access_tokens.discard(issued["access_token"])
        return issued

    provider.state.issue = issue_unknown  # type: ignore[method-assign]


def test_refresh_without_rotation_keeps_the_old_refresh_token(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = connected(make, provider)
    expire_now(conns)
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
    conns = connected(make, provider)
    before = stored(conns)
    with conns.client("acme_crm") as client:
        expire_now(conns)
        client.get(f"{provider.url}/api/echo")
        expire_now(conns)
        client.get(f"{provider.url}/api/echo")  # the rotated token works again
    after = stored(conns)
    assert provider.state.refresh_calls == 2
    assert after.refresh_token != before.refresh_token
    assert after.refresh_token.get_secret_value() in provider.state.refresh_tokens


@pytest.mark.parametrize(
    ("lifetime", "margin"),
    [(30, 3), (120, 12), (300, 30), (3600, 300), (None, 300)],
    ids=["30s", "120s", "300s", "3600s", "unknown-lifetime"],
)
def test_refresh_margin_fits_the_lifetime(lifetime: int | None, margin: float) -> None:
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    life = lifetime or 600
    token = StoredToken(
        "acme_crm",
        "",
        TokenStatus.CONNECTED,
        "acme",
        "oauth2",
        "authorization_code",
        (),
        access_token=SecretStr("at"),
        expires_at=issued + timedelta(seconds=life),
        meta={"lifetime": lifetime} if lifetime else {},
    )
    assert token.refresh_margin(300) == margin
    refresh_at = issued + timedelta(seconds=life - margin)
    assert not token.expiring(300, now=refresh_at - timedelta(seconds=0.5))
    assert token.expiring(300, now=refresh_at)
    assert token.refresh_margin(1) == min(1, margin)  # the setting stays an upper bound


def test_short_lived_token_is_not_refreshed_at_every_use(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    provider.state.expires_in = 120  # shorter than the 300 s margin
    conns = connected(make, provider, refresh_margin=300)
    assert stored(conns).lifetime == 120  # kept with the token: it sets the margin
    with conns.client("acme_crm") as client:
        for _ in range(5):
            assert client.get(f"{provider.url}/api/echo").status_code == 200
    assert provider.state.refresh_calls == 0  # 12 s margin: 108 s of use left


def test_token_near_its_expiry_is_refreshed_ahead(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    provider.state.expires_in = 200
    conns = connected(make, provider, refresh_margin=60)
    expire_now(conns, in_seconds=25)  # margin: min(60, 20 s); 25 s left
    with conns.client("acme_crm") as client:
        client.get(f"{provider.url}/api/echo")
    assert provider.state.refresh_calls == 0
    expire_now(conns, in_seconds=15)  # inside the 20 s margin
    with conns.client("acme_crm") as client:
        client.get(f"{provider.url}/api/echo")
        client.get(f"{provider.url}/api/echo")
    assert provider.state.refresh_calls == 1  # refreshed once, then the new one is cached


def test_token_without_expires_in_is_used_until_a_401(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    provider.state.expires_in = None
    conns = connected(make, provider)
    assert stored(conns).expires_at is None
    with conns.client("acme_crm") as client:
        for _ in range(3):
            assert client.get(f"{provider.url}/api/echo").status_code == 200
        assert provider.state.refresh_calls == 0
        provider.state.access_tokens.clear()  # the provider ends the token
        assert client.get(f"{provider.url}/api/echo").status_code == 200
    assert provider.state.refresh_calls == 1
    assert stored(conns).lifetime is None


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
    always_401(provider)
    with conns.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 401
    assert provider.state.refresh_calls == 1


def test_persistent_401_refreshes_at_most_once_a_minute(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = connected(make, provider)
    always_401(provider)
    with conns.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 401  # refreshes once
        assert client.get(f"{provider.url}/api/echo").status_code == 401  # 1 s later: not
    other_process = make()
    with other_process.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 401
    assert provider.state.refresh_calls == 1
    assert len(provider.state.api_calls) == 4  # 2 + 1 + 1: the 401s were handed back
    assert conns.status("acme_crm").state == ConnectionState.CONNECTED
    # The interval is an argument: with 0 every 401 refreshes, as before.
    eager = make(refresh_on_401_after=0)
    with eager.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 401
    assert provider.state.refresh_calls == 2


def test_401_after_an_expiry_refresh_moments_ago_is_not_refreshed_again(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = connected(make, provider)
    expire_now(conns)
    always_401(provider)
    with conns.client("acme_crm") as client:
        # Refreshed ahead of the call (expired), then the API says 401: not again.
        assert client.get(f"{provider.url}/api/echo").status_code == 401
    assert provider.state.refresh_calls == 1


@pytest.mark.parametrize("zoho", [False, True], ids=["http-400", "zoho-http-200"])
def test_invalid_grant_marks_needs_reconnect(
    make: ConnectionsFactory, provider: FakeProvider, zoho: bool
) -> None:
    conns = connected(make, provider)
    expire_now(conns)
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


@pytest.mark.parametrize("zoho", [False, True], ids=["http-401", "zoho-http-200"])
def test_wrong_client_secret_fails_clearly_and_keeps_the_grant(
    make: ConnectionsFactory, provider: FakeProvider, zoho: bool
) -> None:
    conns = connected(make, provider)
    before = stored(conns)
    expire_now(conns)
    provider.state.zoho = zoho
    # The environment now holds a wrong client secret: invalid_client from the token endpoint.
    misconfigured = make(env={**ENV, "ACME_CLIENT_SECRET": "not-the-secret"})
    with pytest.raises(ClientAuthError) as caught, misconfigured.client("acme_crm") as client:
        client.get(f"{provider.url}/api/echo")
    message = str(caught.value)
    assert "connection 'acme_crm'" in message
    assert "invalid_client" in message
    assert "check client_id/client_secret" in message
    assert "not-the-secret" not in message
    assert caught.value.link_name == "acme_crm"
    after = stored(conns)
    assert after.status == "connected"
    assert after.refresh_token == before.refresh_token  # the grant is kept
    assert misconfigured.status("acme_crm").state == ConnectionState.CONNECTED
    # Fixing the environment recovers without a reconnect.
    fixed = make(env=dict(ENV))
    with fixed.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 200
    assert provider.state.refresh_calls == 1  # the fake counts the grants it looked at


def test_unauthorized_client_keeps_the_grant(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = connected(make, provider)
    expire_now(conns)
    provider.state.refresh_error = "unauthorized_client"
    with pytest.raises(ClientAuthError, match="unauthorized_client"):
        conns.refresh("acme_crm")
    assert stored(conns).refresh_token is not None
    provider.state.refresh_error = None
    assert conns.refresh("acme_crm").state == ConnectionState.CONNECTED


@pytest.mark.parametrize(
    ("status", "error"),
    [(503, None), (None, "Access Denied")],
    ids=["http-503", "zoho-too-many-requests"],
)
def test_transient_token_failures_raise_a_distinct_error(
    make: ConnectionsFactory, provider: FakeProvider, status: int | None, error: str | None
) -> None:
    conns = connected(make, provider)
    expire_now(conns)
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
    conns = connected(make, provider)
    expire_now(conns)
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
    conns = make(
        oauth2_yaml(provider.url, grant_type="client_credentials", client_auth=client_auth)
    )
    assert conns.status("acme_crm").state == ConnectionState.NOT_CONNECTED
    with conns.client("acme_crm") as client:
        assert client.get(f"{provider.url}/api/echo").status_code == 200
        expire_now(conns)  # expired: fetched again
        assert client.get(f"{provider.url}/api/echo").status_code == 200
    assert provider.state.cc_calls == 2
    assert provider.state.cc_auth_methods == [client_auth, client_auth]
    assert provider.state.refresh_calls == 0
    expire_now(conns)
    with conns.client("acme_crm") as client:
        client.get(f"{provider.url}/api/echo")
        client.get(f"{provider.url}/api/echo")
    assert provider.state.cc_calls == 3  # fetched once more, then cached


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
    expire_now(conns)  # the next use in each process wants a refresh
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


def test_token_call_is_given_up_before_the_refresh_lock_expires(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    # timeout=1: every read waits at most 1 s, the lock lives 12 s, a token call gets 2 s.
    conns = connected(make, provider, timeout=1)
    before = stored(conns)
    expire_now(conns)
    # Each byte comes within 0.1 s, so no per-phase timeout fires; the reply as a whole
    # would take longer than the lock lives.
    provider.state.refresh_dribble = conns.lock_timeout + 2
    started = time.monotonic()
    try:
        with (
            pytest.raises(TransientTokenError, match="was given up; will retry"),
            conns.client("acme_crm") as client,
        ):
            client.get(f"{provider.url}/api/echo")
    finally:
        provider.state.stop_dribble.set()
    elapsed = time.monotonic() - started
    assert elapsed < conns.timeout * 2 + 1.5 < conns.lock_timeout
    after = stored(conns)
    assert after.status == "connected"
    assert after.refresh_token == before.refresh_token


def test_refresh_lock_expiring_mid_call_keeps_the_connection(
    make: ConnectionsFactory, provider: FakeProvider, setup: Setup
) -> None:
    """Process A's slow refresh outlives its lock; B refreshes with the same refresh token,
    which A's call has rotated away: B's invalid_grant must not wipe what A stored."""
    provider.state.rotate_refresh = True
    conns = connected(make, provider)
    expire_now(conns)
    provider.state.refresh_delays = [1.0, 2.0]  # A answered first, B refused after A stored
    results: dict[str, Any] = {}

    def use(name: str) -> None:
        instance = build_connections(setup)
        try:
            with instance.client("acme_crm") as client:
                results[name] = client.get(f"{provider.url}/api/echo").status_code
        except Exception as exc:  # noqa: BLE001 - reported below
            results[name] = repr(exc)

    first = threading.Thread(target=use, args=("A",))
    first.start()
    wait_until(lambda: provider.state.refresh_calls >= 1, 10, "A's refresh reaching the provider")
    assert provider.state.refresh_calls == 1
    # A's lock expires now (as it would after lock_timeout seconds): B may refresh.
    expired = redis_of(conns).delete(lock_name(conns.spec("acme_crm"), ""))
    assert expired == 1
    second = threading.Thread(target=use, args=("B",))
    second.start()
    first.join(30)
    second.join(30)
    assert results == {"A": 200, "B": 200}
    assert provider.state.refresh_calls == 2
    record = stored(conns)
    assert record.status == "connected"
    assert record.refresh_token.get_secret_value() in provider.state.refresh_tokens
    assert conns.status("acme_crm").state == ConnectionState.CONNECTED
    expire_now(conns)
    with conns.client("acme_crm") as client:  # the stored rotated token still works
        assert client.get(f"{provider.url}/api/echo").status_code == 200
