"""Fixtures of the connections tests: fake providers on loopback, and a Connections factory.

The fake provider is a small Flask app served by werkzeug in a thread. It plays an
OAuth 2.0 server (code flow with PKCE S256, refresh with or without rotation, client
credentials, revocation, and a Zoho mode that answers errors with HTTP 200), an OAuth 1.0a
server that verifies HMAC-SHA1 signatures, and API-key and Basic protected resources.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from authlib.oauth1.rfc5849 import signature as oauth1_signature
from authlib.oauth1.rfc5849.wrapper import OAuth1Request
from flask import Flask, Response, jsonify, redirect, request
from werkzeug.serving import make_server

import connections.store  # noqa: F401 - registers the tables on Base
from connections import Connections, load_config
from deskwire.database import make_engine, session_factory

CLIENT_ID = "client-1"
CLIENT_SECRET = "client-secret-XYZ"
CONSUMER_KEY = "consumer-1"
CONSUMER_SECRET = "consumer-secret-QRS"
KEYS = ["first passphrase"]


@dataclass
class ProviderState:
    """What the fake provider knows and counts; tests read and tweak it."""

    zoho: bool = False  # answer errors with HTTP 200, like Zoho accounts
    rotate_refresh: bool = False
    expires_in: int | None = 3600  # None: replies without expires_in
    refresh_delay: float = 0.0
    refresh_delays: list[float] = field(default_factory=list)  # per call, before refresh_delay
    refresh_dribble: float = 0.0  # send the refresh reply a byte at a time for this long
    stop_dribble: threading.Event = field(default_factory=threading.Event)
    refresh_error: str | None = None  # e.g. "invalid_grant"
    refresh_error_description: str = "refused by the fake"
    refresh_status: int | None = None  # e.g. 503
    callback_extra: dict[str, str] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    access_tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    refresh_calls: int = 0
    code_calls: int = 0
    cc_calls: int = 0
    cc_auth_methods: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    revoke_status: int = 200  # e.g. 503: the provider does not confirm a revocation
    api_calls: list[dict[str, Any]] = field(default_factory=list)
    apikey_calls: list[dict[str, Any]] = field(default_factory=list)  # what /apikey/echo got
    basic_user: str = "ops"
    basic_password: str = "pa55-word"
    oauth1_request_tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    oauth1_access_tokens: dict[str, str] = field(default_factory=dict)
    oauth1_verified: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self) -> dict[str, Any]:
        access = "at-" + secrets.token_hex(8)
        refresh = "rt-" + secrets.token_hex(8)
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.expires_in,
            "token_type": "Bearer",
            "api_domain": "https://www.zohoapis.com",
        }


def _client_from_request() -> tuple[str | None, str | None, str]:
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        raw = base64.b64decode(header[6:]).decode()
        client_id, _, secret = raw.partition(":")
        return client_id, secret, "basic"
    return request.form.get("client_id"), request.form.get("client_secret"), "post"


def _verify_oauth1(state: ProviderState, token_secret: str | None) -> OAuth1Request | None:
    body = request.get_data(as_text=True)
    oauth_request = OAuth1Request(request.method, request.url, body, dict(request.headers))
    oauth_request.client = SimpleNamespace(get_client_secret=lambda: CONSUMER_SECRET)
    oauth_request.credential = SimpleNamespace(get_oauth_token_secret=lambda: token_secret)
    if oauth_request.client_id != CONSUMER_KEY or oauth_request.signature_method != "HMAC-SHA1":
        return None
    if not oauth1_signature.verify_hmac_sha1(oauth_request):
        return None
    with state.lock:
        state.oauth1_verified += 1
    return oauth_request


def _dribble(state: ProviderState, body: str) -> Iterator[bytes]:
    """Whitespace a byte every 0.1 s for ``refresh_dribble`` seconds, then ``body``: no
    single read waits long, yet the reply as a whole takes as long as the test wants."""
    until = time.monotonic() + state.refresh_dribble
    while time.monotonic() < until:
        if state.stop_dribble.is_set():
            return
        yield b" "
        time.sleep(0.1)
    yield body.encode()


def build_provider(state: ProviderState) -> Flask:
    app = Flask("fake_provider")

    def error(code: str, status: int = 400, description: str = "") -> Response:
        body = {"error": code}
        if description:
            body["error_description"] = description
        response = jsonify(body)
        response.status_code = 200 if state.zoho else status
        return response

    @app.get("/oauth/authorize")
    def authorize() -> Response:
        args = request.args
        if args.get("client_id") != CLIENT_ID or args.get("response_type") != "code":
            return error("invalid_client")
        code = "code-" + secrets.token_hex(6)
        state.codes[code] = {
            "challenge": args.get("code_challenge"),
            "method": args.get("code_challenge_method"),
            "redirect_uri": args.get("redirect_uri"),
            "scope": args.get("scope"),
        }
        query = {"code": code, "state": args.get("state", ""), **state.callback_extra}
        return redirect(f"{args['redirect_uri']}?{urlencode(query)}")

    @app.post("/oauth/token")
    def token() -> Response:
        client_id, secret, method = _client_from_request()
        if client_id != CLIENT_ID or secret != CLIENT_SECRET:
            return error("invalid_client", 401)
        grant = request.form.get("grant_type")
        if grant == "authorization_code":
            state.code_calls += 1
            pending = state.codes.pop(request.form.get("code", ""), None)
            if pending is None:
                return error("invalid_code")
            if pending["redirect_uri"] != request.form.get("redirect_uri"):
                return error("invalid_grant", description="redirect_uri mismatch")
            verifier = request.form.get("code_verifier", "")
            expected = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                .rstrip(b"=")
                .decode()
            )
            if pending["method"] != "S256" or expected != pending["challenge"]:
                return error("invalid_grant", description="PKCE verification failed")
            with state.lock:
                return jsonify(state.issue())
        if grant == "refresh_token":
            with state.lock:
                state.refresh_calls += 1
                delay = state.refresh_delays.pop(0) if state.refresh_delays else None
            time.sleep(state.refresh_delay if delay is None else delay)
            if state.refresh_status:
                return Response("upstream trouble", status=state.refresh_status)
            if state.refresh_error:
                return error(state.refresh_error, description=state.refresh_error_description)
            old = request.form.get("refresh_token", "")
            with state.lock:
                if old not in state.refresh_tokens:
                    return error("invalid_grant")
                issued = state.issue()
                if state.rotate_refresh:
                    state.refresh_tokens.discard(old)
                else:
                    state.refresh_tokens.discard(issued.pop("refresh_token"))
            if state.refresh_dribble:
                return Response(_dribble(state, json.dumps(issued)), mimetype="application/json")
            return jsonify(issued)
        if grant == "client_credentials":
            with state.lock:
                state.cc_calls += 1
                state.cc_auth_methods.append(method)
                issued = state.issue()
            issued.pop("refresh_token")
            issued["scope"] = request.form.get("scope", "")
            return jsonify(issued)
        return error("unsupported_grant_type")

    @app.get("/redirect")
    def redirect_elsewhere() -> Response:
        return redirect(request.args["to"])

    @app.post("/oauth/revoke")
    def revoke() -> Response:
        token_value = request.args.get("token") or request.form.get("token") or ""
        if state.revoke_status != 200:
            return Response("unavailable", status=state.revoke_status)
        state.revoked.append(token_value)
        state.refresh_tokens.discard(token_value)
        return jsonify({})

    @app.route("/api/echo", methods=["GET", "POST"])
    def api_echo() -> Response:
        header = request.headers.get("Authorization", "")
        token_value = header.split(" ", 1)[1] if " " in header else request.args.get("access_token")
        state.api_calls.append({"authorization": header, "args": dict(request.args)})
        if token_value not in state.access_tokens:
            return Response("unauthorized", status=401)
        return jsonify({"ok": True, "prefix": header.split(" ", 1)[0] if header else None})

    @app.route("/apikey/echo", methods=["GET", "POST"])
    def apikey_echo() -> Response:
        received = {
            "args": dict(request.args),
            "form": dict(request.form),
            "headers": {k.lower(): v for k, v in request.headers.items()},
        }
        state.apikey_calls.append(received)
        return jsonify(received)

    @app.get("/basic/echo")
    def basic_echo() -> Response:
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{state.basic_user}:{state.basic_password}".encode()).decode()
        if header != f"Basic {expected}":
            return Response("unauthorized", status=401)
        return jsonify({"ok": True})

    @app.post("/oauth1/request_token")
    def oauth1_request_token() -> Response:
        verified = _verify_oauth1(state, None)
        if verified is None:
            return Response("invalid signature", status=401)
        request_token = "rq-" + secrets.token_hex(6)
        state.oauth1_request_tokens[request_token] = {
            "secret": "rqs-" + secrets.token_hex(6),
            "callback": verified.redirect_uri,
            "verifier": "ver-" + secrets.token_hex(6),
        }
        body = {
            "oauth_token": request_token,
            "oauth_token_secret": state.oauth1_request_tokens[request_token]["secret"],
            "oauth_callback_confirmed": "true",
        }
        return Response(urlencode(body), content_type="application/x-www-form-urlencoded")

    @app.get("/oauth1/authorize")
    def oauth1_authorize() -> Response:
        pending = state.oauth1_request_tokens[request.args["oauth_token"]]
        query = {"oauth_token": request.args["oauth_token"], "oauth_verifier": pending["verifier"]}
        return redirect(f"{pending['callback']}?{urlencode(query)}")

    @app.post("/oauth1/access_token")
    def oauth1_access_token() -> Response:
        header = request.headers.get("Authorization", "")
        request_token = next(
            (t for t in state.oauth1_request_tokens if f'oauth_token="{t}"' in header), None
        )
        if request_token is None:
            return Response("unknown request token", status=401)
        pending = state.oauth1_request_tokens.pop(request_token)
        verified = _verify_oauth1(state, pending["secret"])
        if verified is None or verified.oauth_params.get("oauth_verifier") != pending["verifier"]:
            return Response("invalid signature or verifier", status=401)
        access, access_secret = "ac-" + secrets.token_hex(6), "acs-" + secrets.token_hex(6)
        state.oauth1_access_tokens[access] = access_secret
        body = {"oauth_token": access, "oauth_token_secret": access_secret}
        return Response(urlencode(body), content_type="application/x-www-form-urlencoded")

    @app.route("/oauth1/api", methods=["GET", "POST"])
    def oauth1_api() -> Response:
        header = request.headers.get("Authorization", "")
        access = next(
            (t for t in state.oauth1_access_tokens if f'oauth_token="{t}"' in header), None
        )
        if access is None:
            return Response("unknown token", status=401)
        if _verify_oauth1(state, state.oauth1_access_tokens[access]) is None:
            return Response("invalid signature", status=401)
        return jsonify({"ok": True, "form": dict(request.form)})

    # Zoho accounts' paths for the same endpoints.
    app.add_url_rule("/oauth/v2/auth", view_func=authorize, methods=["GET"], endpoint="z_auth")
    app.add_url_rule("/oauth/v2/token", view_func=token, methods=["POST"], endpoint="z_token")
    app.add_url_rule(
        "/oauth/v2/token/revoke", view_func=revoke, methods=["POST"], endpoint="z_revoke"
    )
    return app


@dataclass
class FakeProvider:
    url: str
    state: ProviderState


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    """A fake provider on a free loopback port, fresh for each test."""
    state = ProviderState()
    server = make_server("127.0.0.1", 0, build_provider(state), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield FakeProvider(f"http://127.0.0.1:{server.server_port}", state)
    finally:
        server.shutdown()
        thread.join(timeout=5)


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
    return Connections(
        config,
        sessions,
        redis.Redis.from_url(setup.redis_url),
        keys or setup.keys,
        **kwargs,
    )


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
