"""Tokens are encrypted at rest, keys rotate, and no secret reaches a repr, str or log."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import create_engine, text

from connections import SecretKeyError
from connections.store import TokenStatus
from tests.connections.conftest import (
    CLIENT_SECRET,
    ConnectionsFactory,
    FakeProvider,
    Setup,
    connect_via_browser,
    oauth2_yaml,
    store_of,
)


def raw_rows(setup: Setup) -> list[str]:
    engine = create_engine(setup.database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM connection_tokens")).all()
        rows += conn.execute(text("SELECT * FROM connection_auth_states")).all()
    engine.dispose()
    return [" ".join(str(value) for value in row) for row in rows]


def test_tokens_are_encrypted_at_rest(
    make: ConnectionsFactory, provider: FakeProvider, setup: Setup
) -> None:
    conns = make(oauth2_yaml(provider.url))
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))
    record = store_of(conns).load("acme_crm")
    access = record.access_token.get_secret_value()
    refresh = record.refresh_token.get_secret_value()
    dump = "\n".join(raw_rows(setup))
    assert "acme_crm" in dump
    assert access not in dump
    assert refresh not in dump
    pd = make("connections:\n  pd:\n    service: pagerduty\n")
    pd.connect_static("pd", {"Authorization": "pd-key-secret-123"})
    assert "pd-key-secret-123" not in "\n".join(raw_rows(setup))


def test_key_rotation(make: ConnectionsFactory, provider: FakeProvider, setup: Setup) -> None:
    conns = make(oauth2_yaml(provider.url))
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))
    before = raw_rows(setup)
    # New key first, old key kept: old rows still decrypt.
    rotated = make(keys=["second passphrase", "first passphrase"])
    assert rotated.status("acme_crm").connected
    assert rotated.rotate_keys() >= 1
    assert raw_rows(setup) != before
    only_new = make(keys=["second passphrase"])
    assert only_new.status("acme_crm").connected
    only_old = make(keys=["first passphrase"])
    with pytest.raises(SecretKeyError, match="cannot be decrypted") as caught:
        only_old.status("acme_crm")
    assert "passphrase" not in str(caught.value)


def test_secrets_never_in_repr_str_or_logs(
    make: ConnectionsFactory,
    provider: FakeProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    conns = make(oauth2_yaml(provider.url, token_placement="query"))
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))
    conns.refresh("acme_crm")  # a token refresh too, with whatever it logs
    with conns.client("acme_crm") as client:
        client.get(f"{provider.url}/api/echo")
        texts = [repr(client.auth), repr(conns), repr(conns.config.connections["acme_crm"])]
    record = store_of(conns).load("acme_crm")
    texts += [repr(record), str(record), repr(conns.status("acme_crm"))]
    secrets = [
        record.access_token.get_secret_value(),
        record.refresh_token.get_secret_value(),
        CLIENT_SECRET,
        "first passphrase",
    ]
    # The fake server's own access log (werkzeug) is the far side, not deskwire.
    logged = "\n".join(
        record.getMessage() for record in caplog.records if record.name != "werkzeug"
    )
    assert "access_token=***" in logged  # httpx logged the URL, masked
    for secret in secrets:
        assert secret not in logged
        for rendered in texts:
            assert secret not in rendered
    provider.state.refresh_error = "invalid_grant"
    message = ""
    try:
        conns.refresh("acme_crm")
    except Exception as exc:  # noqa: BLE001
        message = str(exc) + repr(exc)
    assert "invalid_grant" in message
    for secret in secrets:
        assert secret not in message


def test_mark_with_an_expected_version_is_a_compare_and_set(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(oauth2_yaml(provider.url))
    conns.complete_callback(connect_via_browser(conns, "acme_crm"))
    read = store_of(conns).load("acme_crm")
    conns.refresh("acme_crm")  # another writer moves the row on
    newer = store_of(conns).load("acme_crm")
    assert newer.version == read.version + 1
    changed = store_of(conns).mark(
        "acme_crm", "", TokenStatus.NEEDS_RECONNECT, "invalid_grant", expected_version=read.version
    )
    assert changed is False
    kept = store_of(conns).load("acme_crm")
    assert kept.status == TokenStatus.CONNECTED
    assert kept.refresh_token == newer.refresh_token
    assert store_of(conns).mark(
        "acme_crm", "", TokenStatus.NEEDS_RECONNECT, "invalid_grant", expected_version=kept.version
    )
    assert store_of(conns).load("acme_crm").status == TokenStatus.NEEDS_RECONNECT
