"""A fake OAuth provider on loopback, the one every test that needs one uses.

:class:`FakeOAuth` holds what the provider knows and counts; :meth:`FakeOAuth.app` is a
small Flask app over it, served by :func:`running_oauth` (or ``tests.wsgi_server.serving``
when a test holds the fake itself). It plays:

* an OAuth 2.0 server: authorization code with PKCE S256 (or the user refusing,
  ``deny``), refresh with or without rotation, client credentials (client secret in the
  form or in Basic), revocation; a Zoho mode that answers errors with HTTP 200, and Zoho
  accounts' paths for the same endpoints;
* an OAuth 1.0a server that verifies HMAC-SHA1 signatures;
* protected resources: ``/api/echo`` (bearer tokens, refusing unknown, withdrawn and, with
  ``enforce_expiry``, expired ones), ``/apikey/echo`` (echoes what it got), ``/basic/echo``.

Delays and failures are configurable per test (``refresh_delay(s)``, ``refresh_dribble``,
``refresh_error``, ``refresh_status``, ``revoke_status``); counters say what it was asked.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from authlib.oauth1.rfc5849 import signature as oauth1_signature
from authlib.oauth1.rfc5849.wrapper import OAuth1Request
from flask import Flask, Response, jsonify, redirect, request

from tests.wsgi_server import serving

CLIENT_ID = "client-1"
CLIENT_SECRET = "client-secret-XYZ"
CONSUMER_KEY = "consumer-1"
CONSUMER_SECRET = "consumer-secret-QRS"


@dataclass
class FakeOAuth:
    """What the fake provider knows and counts; tests read and tweak it."""

    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    zoho: bool = False  # answer errors with HTTP 200, like Zoho accounts
    deny: bool = False  # the user refuses on the consent page: error=access_denied
    rotate_refresh: bool = False
    expires_in: int | None = 3600  # None: replies without expires_in
    enforce_expiry: bool = False  # /api/echo refuses access tokens older than expires_in
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
    issued: list[str] = field(default_factory=list)  # every token handed out, in order
    issued_at: dict[str, float] = field(default_factory=dict)  # access token -> time.time()
    withdrawn: set[str] = field(default_factory=set)  # access tokens the provider took back
    scopes_asked: list[str] = field(default_factory=list)  # scope of each authorize visit
    refresh_calls: int = 0
    code_calls: int = 0
    cc_calls: int = 0
    cc_auth_methods: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    revoke_status: int = 200  # e.g. 503: the provider does not confirm a revocation
    api_calls: list[dict[str, Any]] = field(default_factory=list)
    api_accepted: int = 0
    api_refusals: collections.Counter[str] = field(default_factory=collections.Counter)
    apikey_calls: list[dict[str, Any]] = field(default_factory=list)  # what /apikey/echo got
    basic_user: str = "ops"
    basic_password: str = "pa55-word"
    oauth1_request_tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    oauth1_access_tokens: dict[str, str] = field(default_factory=dict)
    oauth1_verified: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self) -> dict[str, Any]:
        """New access and refresh tokens (call with ``lock`` held)."""
        access = "at-" + secrets.token_hex(8)
        refresh = "rt-" + secrets.token_hex(8)
        now = time.time()
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        self.issued += [access, refresh]
        self.issued_at[access] = now
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.expires_in,
            "token_type": "Bearer",
            "api_domain": "https://www.zohoapis.com",
        }

    def newest(self) -> tuple[str, float] | None:
        """The access token issued last and when, or None before the first."""
        with self.lock:
            if not self.issued_at:
                return None
            token = max(self.issued_at, key=self.issued_at.__getitem__)
            return token, self.issued_at[token]

    def withdraw(self, access_token: str) -> None:
        """The provider takes an access token back: the API answers 401 to it from now on."""
        with self.lock:
            self.withdrawn.add(access_token)

    def refusal(self, access_token: str | None) -> str | None:
        """Why ``/api/echo`` refuses ``access_token``, or None when it accepts it."""
        if access_token in self.withdrawn:
            return "revoked"
        if access_token not in self.access_tokens:
            return "unknown"
        if not self.enforce_expiry or self.expires_in is None:
            return None
        expires = self.issued_at.get(access_token, 0.0) + self.expires_in
        return "expired" if time.time() >= expires else None

    def app(self) -> Flask:
        """The provider's endpoints over this state, as an app of their own."""
        app = Flask("fake_oauth_provider")
        self.add_routes(app)
        return app

    def add_routes(self, app: Flask) -> None:
        """Add the provider's endpoints to ``app`` (a fake that plays a provider too)."""
        _add_oauth2_routes(app, self)
        _add_resource_routes(app, self)
        _add_oauth1_routes(app, self)


@dataclass
class RunningOAuth:
    """A fake provider being served: its base URL and its state."""

    url: str
    state: FakeOAuth


@contextmanager
def running_oauth(state: FakeOAuth | None = None) -> Iterator[RunningOAuth]:
    """Serve ``state`` (a fresh :class:`FakeOAuth` by default) on a free loopback port."""
    state = state or FakeOAuth()
    with serving(state.app()) as url:
        yield RunningOAuth(url, state)


def _client_from_request() -> tuple[str | None, str | None, str]:
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        raw = base64.b64decode(header[6:]).decode()
        client_id, _, secret = raw.partition(":")
        return client_id, secret, "basic"
    return request.form.get("client_id"), request.form.get("client_secret"), "post"


def _verify_oauth1(state: FakeOAuth, token_secret: str | None) -> OAuth1Request | None:
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


def _dribble(state: FakeOAuth, body: str) -> Iterator[bytes]:
    """Whitespace a byte every 0.1 s for ``refresh_dribble`` seconds, then ``body``: no
    single read waits long, yet the reply as a whole takes as long as the test wants."""
    until = time.monotonic() + state.refresh_dribble
    while time.monotonic() < until:
        if state.stop_dribble.is_set():
            return
        yield b" "
        time.sleep(0.1)  # the deliberate slowness under test
    yield body.encode()


def _pkce_matches(pending: dict[str, Any], verifier: str) -> bool:
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return pending["method"] == "S256" and expected.rstrip(b"=").decode() == pending["challenge"]


def _add_oauth2_routes(app: Flask, state: FakeOAuth) -> None:
    """OAuth 2.0: authorize, token (three grants), revoke; and Zoho accounts' paths."""

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
        if args.get("client_id") != state.client_id or args.get("response_type") != "code":
            return error("invalid_client")
        state.scopes_asked.append(args.get("scope", ""))
        if state.deny:
            query = {"error": "access_denied", "state": args.get("state", "")}
            return redirect(f"{args['redirect_uri']}?{urlencode(query)}")
        code = "code-" + secrets.token_hex(6)
        state.codes[code] = {
            "challenge": args.get("code_challenge"),
            "method": args.get("code_challenge_method"),
            "redirect_uri": args.get("redirect_uri"),
            "scope": args.get("scope"),
        }
        query = {"code": code, "state": args.get("state", ""), **state.callback_extra}
        return redirect(f"{args['redirect_uri']}?{urlencode(query)}")

    def exchange_code() -> Response:
        state.code_calls += 1
        pending = state.codes.pop(request.form.get("code", ""), None)
        if pending is None:
            return error("invalid_code")
        if pending["redirect_uri"] != request.form.get("redirect_uri"):
            return error("invalid_grant", description="redirect_uri mismatch")
        if not _pkce_matches(pending, request.form.get("code_verifier", "")):
            return error("invalid_grant", description="PKCE verification failed")
        with state.lock:
            return jsonify(state.issue())

    def refresh() -> Response:
        with state.lock:
            state.refresh_calls += 1
            delay = state.refresh_delays.pop(0) if state.refresh_delays else None
        time.sleep(state.refresh_delay if delay is None else delay)  # a slow provider, on purpose
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

    def client_credentials(method: str) -> Response:
        with state.lock:
            state.cc_calls += 1
            state.cc_auth_methods.append(method)
            issued = state.issue()
        issued.pop("refresh_token")
        issued["scope"] = request.form.get("scope", "")
        return jsonify(issued)

    @app.post("/oauth/token")
    def token() -> Response:
        client_id, secret, method = _client_from_request()
        if client_id != state.client_id or secret != state.client_secret:
            return error("invalid_client", 401)
        grant = request.form.get("grant_type")
        if grant == "authorization_code":
            return exchange_code()
        if grant == "refresh_token":
            return refresh()
        if grant == "client_credentials":
            return client_credentials(method)
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

    # Zoho accounts' paths for the same endpoints.
    app.add_url_rule("/oauth/v2/auth", view_func=authorize, methods=["GET"], endpoint="z_auth")
    app.add_url_rule("/oauth/v2/token", view_func=token, methods=["POST"], endpoint="z_token")
    app.add_url_rule(
        "/oauth/v2/token/revoke", view_func=revoke, methods=["POST"], endpoint="z_revoke"
    )


def _add_resource_routes(app: Flask, state: FakeOAuth) -> None:
    """Protected resources: bearer (``/api/echo``), API key and Basic."""

    @app.route("/api/echo", methods=["GET", "POST"])
    def api_echo() -> Response:
        header = request.headers.get("Authorization", "")
        token_value = header.split(" ", 1)[1] if " " in header else request.args.get("access_token")
        with state.lock:
            state.api_calls.append({"authorization": header, "args": dict(request.args)})
            refused = state.refusal(token_value)
            if refused is not None:
                state.api_refusals[refused] += 1
                return Response("unauthorized", status=401)
            state.api_accepted += 1
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


def _add_oauth1_routes(app: Flask, state: FakeOAuth) -> None:
    """OAuth 1.0a: request token, authorize, access token, and a signed API."""

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
