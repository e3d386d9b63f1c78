"""Support for the connection page tests: a fake OAuth 2.0 provider, the app, an admin client.

The provider is a tiny Flask app served on loopback: ``/authorize`` sends the browser back
to the redirect URI with a code (or ``error=access_denied``), ``/token`` exchanges codes and
client credentials, ``/revoke`` records what it was asked to revoke.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import redis
from flask import Flask, Response, jsonify, redirect, request

from connections import Connections, load_config
from deskwire.compose import web_app
from deskwire.database import make_engine, session_factory
from deskwire.schema import upgrade
from deskwire.settings import Settings
from tests.wsgi_server import serving
from webhooks.pages import register_connection_pages

PASSWORD = "correct horse battery staple"
SECRET_KEY = "pages-test-secret-key"
CLIENT_ID = "acme-client"
CLIENT_SECRET = "ACME-CLIENT-SECRET-VALUE"
API_KEY = "SUPER-SECRET-VALUE"
ENV = {"ACME_CLIENT_ID": CLIENT_ID, "ACME_CLIENT_SECRET": CLIENT_SECRET}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class ProviderState:
    """What the fake provider was asked; tests read it and set ``deny``."""

    deny: bool = False
    codes: dict[str, str] = field(default_factory=dict)  # code -> redirect_uri
    scopes_asked: list[str] = field(default_factory=list)
    code_calls: int = 0
    issued: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)


def build_provider(state: ProviderState) -> Flask:
    """A fake OAuth 2.0 server (code flow, client credentials, revocation)."""
    app = Flask("fake_oauth_provider")

    def tokens() -> dict[str, Any]:
        access, refresh = "at-" + secrets.token_hex(8), "rt-" + secrets.token_hex(8)
        state.issued += [access, refresh]
        return {"access_token": access, "refresh_token": refresh, "expires_in": 3600}

    @app.get("/authorize")
    def authorize() -> Response:
        args = request.args
        if args.get("client_id") != CLIENT_ID or args.get("response_type") != "code":
            return Response("unknown client", status=400)
        state.scopes_asked.append(args.get("scope", ""))
        if state.deny:
            query = {"error": "access_denied", "state": args.get("state", "")}
        else:
            code = "code-" + secrets.token_hex(8)
            state.codes[code] = args["redirect_uri"]
            query = {"code": code, "state": args.get("state", "")}
        return redirect(f"{args['redirect_uri']}?{urlencode(query)}")

    @app.post("/token")
    def token() -> Response | tuple[Response, int]:
        form = request.form
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return jsonify(error="invalid_client"), 401
        if form.get("grant_type") == "authorization_code":
            state.code_calls += 1
            redirect_uri = state.codes.pop(form.get("code", ""), None)
            if redirect_uri is None or redirect_uri != form.get("redirect_uri"):
                return jsonify(error="invalid_grant"), 400
            return jsonify(tokens())
        if form.get("grant_type") == "client_credentials":
            issued = tokens()
            issued.pop("refresh_token")
            return jsonify(issued)
        return jsonify(error="unsupported_grant_type"), 400

    @app.post("/revoke")
    def revoke() -> Response:
        state.revoked.append(request.form.get("token") or request.args.get("token") or "")
        return jsonify({})

    return app


def connections_yaml(provider_url: str) -> str:
    """A connections file: OAuth 2.0 (code and client credentials), API key, unset env."""
    return f"""\
# connections for the page tests
services:
  acme:
    name: Acme CRM
    auth: oauth2
    grant_type: authorization_code
    authorize_url: {provider_url}/authorize
    token_url: {provider_url}/token
    revoke_url: {provider_url}/revoke
    scope_delimiter: space
    client_id: ${{ACME_CLIENT_ID}}
    client_secret: ${{ACME_CLIENT_SECRET}}
  acme_machine:
    name: Acme machine API
    auth: oauth2
    grant_type: client_credentials
    token_url: {provider_url}/token
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

    def ping(self) -> bool:
        return True

    def last_worker_seen(self) -> float | None:
        return 0.0


@dataclass
class PagesApp:
    """A running web app with the pages, its facade, the fake provider and the used-by map."""

    base: str
    facade: Connections
    provider: ProviderState
    provider_url: str
    config_path: Path
    used_by: dict[str, list[str]]


@contextmanager
def running_pages(
    tmp_path: Path, database_url: str, redis_url: str, **overrides: Any
) -> Iterator[PagesApp]:
    """Serve the app with the pages on loopback (and the fake provider beside it)."""
    state = ProviderState()
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
    with serving(build_provider(state)) as provider_url, serving(app) as base:
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
