"""Support for the connection page tests: the app, the fake OAuth provider, an admin client.

The provider is ``tests.fakes.oauth`` on loopback: its authorize endpoint sends the browser
back to the redirect URI with a code (or ``error=access_denied`` when told to ``deny``), its
token endpoint exchanges codes and client credentials, its revoke endpoint records what it
was asked to revoke.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from connections import Connections, load_config
from deskwire.compose import web_app
from deskwire.database import make_engine, session_factory
from deskwire.schema import upgrade
from deskwire.settings import Settings
from tests.fakes.oauth import FakeOAuth
from tests.wsgi_server import serving
from webhooks.pages import register_connection_pages
from worker.enqueue import StoredEvent

PASSWORD = "correct horse battery staple"
SECRET_KEY = "pages-test-secret-key"
CLIENT_ID = "acme-client"
CLIENT_SECRET = "ACME-CLIENT-SECRET-VALUE"
API_KEY = "SUPER-SECRET-VALUE"
ENV = {"ACME_CLIENT_ID": CLIENT_ID, "ACME_CLIENT_SECRET": CLIENT_SECRET}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def connections_yaml(provider_url: str) -> str:
    """A connections file: OAuth 2.0 (code and client credentials), API key, unset env."""
    return f"""\
# connections for the page tests
services:
  acme:
    name: Acme CRM
    auth: oauth2
    grant_type: authorization_code
    authorize_url: {provider_url}/oauth/authorize
    token_url: {provider_url}/oauth/token
    revoke_url: {provider_url}/oauth/revoke
    scope_delimiter: space
    client_id: ${{ACME_CLIENT_ID}}
    client_secret: ${{ACME_CLIENT_SECRET}}
  acme_machine:
    name: Acme machine API
    auth: oauth2
    grant_type: client_credentials
    token_url: {provider_url}/oauth/token
    client_id: ${{ACME_CLIENT_ID}}
    client_secret: ${{ACME_CLIENT_SECRET}}
  ticketer:
    name: Ticketer
    auth: api_key
    base_url: https://ticketer.example/api
    params:
      - {{name: X-Api-Key, display_name: API key, placement: header}}
connections:
  acme_crm:
    name: Acme CRM
    service: acme
    scopes: [contacts.read, notes.write]   # what deskwire may do
  acme_backup:
    name: Acme CRM (backup tenant)
    service: acme
    client_id: ${{ACME_BACKUP_CLIENT_ID}}
  acme_jobs:
    name: Acme jobs
    service: acme_machine
  ticketer:
    name: Ticketer
    service: ticketer
"""


class NullQueue:
    """The event queue the pages never use (the webhook side is not under test here)."""

    def enqueue(self, event_pk: int, *, event_type: str, request_id: str | None) -> None:
        raise AssertionError("the connection pages must not enqueue events")

    def enqueue_many(self, events: Sequence[StoredEvent]) -> None:
        raise AssertionError("the connection pages must not enqueue events")

    def ping(self) -> bool:
        return True

    def last_worker_seen(self) -> float | None:
        return 0.0


@dataclass
class PagesApp:
    """A running web app with the pages, its facade, the fake provider and the used-by map."""

    base: str
    facade: Connections
    provider: FakeOAuth
    provider_url: str
    config_path: Path
    used_by: dict[str, list[str]]


@contextmanager
def running_pages(
    tmp_path: Path, database_url: str, redis_url: str, **overrides: Any
) -> Iterator[PagesApp]:
    """Serve the app with the pages on loopback (and the fake provider beside it)."""
    state = FakeOAuth(CLIENT_ID, CLIENT_SECRET)
    config_path = tmp_path / "connections.yml"
    used_by: dict[str, list[str]] = {}
    values: dict[str, Any] = {
        "database_url": database_url,
        "broker_url": redis_url,
        "admin_password": PASSWORD,
        "secret_key": SECRET_KEY,
        "connections_file": config_path,
        "webhook_tokens": "unused-token",
    }
    values.update(overrides)
    settings = Settings(**values)
    migrated = make_engine(settings.database_url)
    upgrade(migrated)  # as `deskwire db upgrade` does (a no-op when current)
    migrated.dispose()
    app = web_app(settings, queue=NullQueue())
    built: list[Connections] = []
    client = redis.Redis.from_url(redis_url)
    register_connection_pages(
        app,
        connections=lambda: built[0],
        settings=settings,
        used_by=lambda: used_by,
        redis_client=client,
    )
    engine = make_engine(settings.database_url)
    with serving(state.app()) as provider_url, serving(app) as base:
        config_path.write_text(connections_yaml(provider_url), encoding="utf-8")
        facade = Connections(
            load_config(config_path, ENV),
            session_factory(engine),
            client,
            [SECRET_KEY],
            public_url=base,
            timeout=10,
        )
        built.append(facade)
        try:
            yield PagesApp(base, facade, state, provider_url, config_path, used_by)
        finally:
            facade.close()
    client.close()
    engine.dispose()


class Admin:
    """An HTTP client with a cookie jar that keeps every page body it saw."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=15, follow_redirects=False)
        self.bodies: list[str] = []
        self.token: str | None = None

    def close(self) -> None:
        self.http.close()

    def _keep(self, response: httpx.Response) -> httpx.Response:
        self.bodies.append(response.text)
        found = CSRF.search(response.text)
        if found:
            self.token = found.group(1)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._keep(self.http.get(path, **kwargs))

    def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True
    ) -> httpx.Response:
        form = dict(data or {})
        if csrf and "csrf_token" not in form:
            assert self.token, "no page with a form was fetched yet"
            form["csrf_token"] = self.token
        return self._keep(self.http.post(path, data=form))

    def follow(self, response: httpx.Response) -> httpx.Response:
        """GET the redirect target of ``response`` (on this app)."""
        assert response.status_code in (302, 303), (response.status_code, response.text[:500])
        return self.get(response.headers["Location"])

    def sign_in(self, password: str = PASSWORD) -> httpx.Response:
        self.get("/connections/login")
        response = self.post("/connections/login", {"password": password})
        if response.status_code == 303:
            self.get("/connections")  # signing in starts a new session: pick up its CSRF token
        return response
