"""Fixtures of the connections tests: the fake provider on loopback, a Connections factory.

The fake provider is ``tests.fakes.oauth`` (OAuth 2.0 and 1.0a, API-key and Basic protected
resources), fresh for each test.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from connections import Connections, load_config
from connections.store import KeyRing, TokenStore  # also registers the tables on Base
from deskwire.database import make_engine, session_factory
from tests.fakes.oauth import CLIENT_ID, CLIENT_SECRET, CONSUMER_KEY, CONSUMER_SECRET, running_oauth
from tests.fakes.oauth import RunningOAuth as FakeProvider

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "CONSUMER_KEY", "CONSUMER_SECRET", "FakeProvider"]

KEYS = ["first passphrase"]


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    """A fake provider on a free loopback port, fresh for each test."""
    with running_oauth() as running:
        yield running


def oauth2_yaml(url: str, **overrides: Any) -> str:
    """A connections file with a custom OAuth 2.0 service on the fake provider."""
    options = {
        "grant_type": "authorization_code",
        "token_placement": "header",
        "client_auth": "post",
        "scopes": "[contacts.read, notes.write]",
        "per_user": "false",
        "extra": "",
    }
    options.update({k: str(v) for k, v in overrides.items()})
    return f"""
services:
  acme:
    name: Acme CRM
    auth: oauth2
    grant_type: {options["grant_type"]}
    token_placement: {options["token_placement"]}
    client_auth: {options["client_auth"]}
    authorize_url: {url}/oauth/authorize
    token_url: {url}/oauth/token
    revoke_url: {url}/oauth/revoke
    scope_delimiter: space
    client_id: ${{ACME_CLIENT_ID}}
    client_secret: ${{ACME_CLIENT_SECRET}}
{options["extra"]}
connections:
  acme_crm:
    name: Acme CRM
    service: acme
    scopes: {options["scopes"]}
    per_user: {options["per_user"]}
"""


ENV = {"ACME_CLIENT_ID": CLIENT_ID, "ACME_CLIENT_SECRET": CLIENT_SECRET}


@dataclass
class Setup:
    """Where a test's Connections live, so a second instance (or process) can be built."""

    database_url: str
    redis_url: str
    config_path: Path
    keys: list[str]


ConnectionsFactory = Callable[..., Connections]


@pytest.fixture
def setup(tmp_path: Path, database_url: str, redis_url: str) -> Setup:
    return Setup(database_url, redis_url, tmp_path / "connections.yml", list(KEYS))


def build_connections(
    setup: Setup,
    text: str | None = None,
    env: dict[str, str] | None = None,
    *,
    keys: list[str] | None = None,
    **kwargs: Any,
) -> Connections:
    """A Connections over the test's database and Redis; ``text`` rewrites the file."""
    if text is not None:
        setup.config_path.write_text(text)
    config = load_config(setup.config_path, ENV if env is None else env)
    sessions = session_factory(make_engine(setup.database_url))
    kwargs.setdefault("public_url", "http://127.0.0.1:8000")
    client = redis.Redis.from_url(setup.redis_url)
    conns = Connections(config, sessions, client, keys or setup.keys, **kwargs)
    _PARTS[conns] = _Parts(sessions, client, TokenStore(sessions, KeyRing(keys or setup.keys)))
    return conns


@dataclass(frozen=True)
class _Parts:
    sessions: sessionmaker[Session]
    redis: redis.Redis
    store: TokenStore


# What each test's Connections was built on, so tests read the same database and Redis
# through public APIs (the token store, a session) rather than the facade's internals.
_PARTS: weakref.WeakKeyDictionary[Connections, _Parts] = weakref.WeakKeyDictionary()


def store_of(conns: Connections) -> TokenStore:
    """The token store over ``conns``'s database, with its keys."""
    return _PARTS[conns].store


def sessions_of(conns: Connections) -> sessionmaker[Session]:
    """Sessions on ``conns``'s database."""
    return _PARTS[conns].sessions


def redis_of(conns: Connections) -> redis.Redis:
    """The Redis ``conns`` uses."""
    return _PARTS[conns].redis


@pytest.fixture
def make(setup: Setup) -> ConnectionsFactory:
    """``make(yaml_text, env=None, **kwargs)`` → Connections on this test's DB and Redis."""

    def factory(
        text: str | None = None, env: dict[str, str] | None = None, **kwargs: Any
    ) -> Connections:
        return build_connections(setup, text, env, **kwargs)

    return factory


def connect_via_browser(conns: Connections, link: str, user: str | None = None) -> dict[str, str]:
    """Follow the authorize URL to the fake's redirect and return the callback query."""
    from urllib.parse import parse_qsl, urlsplit

    import httpx

    url = conns.authorize_url(link, user=user)
    response = httpx.get(url, follow_redirects=False)
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(conns.redirect_uri)
    return dict(parse_qsl(urlsplit(location).query))
