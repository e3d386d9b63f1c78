"""The facade the worker, the web pages and the CLI use: :class:`Connections`.

It composes the parsed configuration, the encrypted token store, the refresh lock in Redis
and the auth flows, and hands out authenticated ``httpx.Client`` objects.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import redis
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from pydantic import SecretStr
from redis.exceptions import LockError, LockNotOwnedError, RedisError
from sqlalchemy.orm import Session, sessionmaker

from connections.auth import ApiKeyAuth, BasicAuth, OAuth1Auth, OAuth2Auth
from connections.config import SCOPE_DELIMITERS, ConnectionsConfig, ConnectionSpec
from connections.errors import (
    ConnectionInUseError,
    ConnectionRevokedError,
    ConnectionsError,
    NeedsReconnectError,
    NotConfiguredError,
    NotConnectedError,
    OAuthCallbackError,
    TransientTokenError,
    UnknownConnectionError,
    UnsupportedOperationError,
)
from connections.oauth import (
    GrantRevokedError,
    TokenReply,
    fetch_oauth1_token,
    request_token,
    revoke_token,
)
from connections.outbound import OnlyHosts, connection_hosts
from connections.secret_masking import MaskingTransport
from connections.store import (
    KeyRing,
    StoredToken,
    TokenStatus,
    TokenStore,
    digest,
    rotate_keys,
    utcnow,
)
from connections.transport import HttpsOnlyTransport, SharedTransport, install_redactor
from deskwire.metrics_store import MetricsStore

__all__ = [
    "ConnectAttempt",
    "ConnectionState",
    "ConnectionStatus",
    "Connections",
    "RevokeOutcome",
    "SdpEndpoint",
]

CALLBACK_PATH = "/connections/callback"

log = logging.getLogger(__name__)


class ConnectionState(enum.StrEnum):
    """What a person sees in the connections list."""

    CONNECTED = "connected"
    NOT_CONNECTED = "not_connected"
    NOT_CONFIGURED = "not_configured"
    REVOKED = "revoked"
    NEEDS_RECONNECT = "needs_reconnect"


@dataclass(frozen=True)
class ConnectionStatus:
    """The state of one connection (or of one user's copy of a per-user connection)."""

    link_name: str
    name: str
    service: str
    service_name: str
    auth: str
    state: ConnectionState
    message: str
    per_user: bool = False
    user: str | None = None
    users_connected: int = 0
    grant_type: str | None = None
    scopes: tuple[str, ...] = ()
    expires_at: datetime | None = None
    connected_at: datetime | None = None

    @property
    def connected(self) -> bool:
        """Whether the connection can be used now."""
        return self.state == ConnectionState.CONNECTED


@dataclass(frozen=True)
class SdpEndpoint:
    """Where and how to call an SDP instance's REST API v3."""

    link_name: str
    api_base: str  # e.g. https://sdpondemand.manageengine.com/app/itdesk/api/v3
    accept: str
    onprem: bool


@dataclass(frozen=True)
class ConnectAttempt:
    """A started browser connect: where to send the person, and the attempt's key.

    ``key`` is what the provider's redirect to the callback carries back: the ``state`` of
    an OAuth 2.0 attempt, the request ``oauth_token`` of an OAuth 1.0a one (see
    :meth:`Connections.callback_key`). Whoever started the attempt may remember a digest of
    it to check that the callback comes back to the same browser session.
    """

    url: str
    key: str


@dataclass(frozen=True)
class RevokeOutcome:
    """What :meth:`Connections.revoke` did: whether the provider confirmed, and a message."""

    link_name: str
    provider_revoked: bool | None  # None: the service has no revoke URL
    message: str


class _OAuth2Tokens:
    """The :class:`~connections.auth.TokenSource` of one (connection, user)."""

    def __init__(self, owner: Connections, spec: ConnectionSpec, user_key: str) -> None:
        self._owner = owner
        self._spec = spec
        self._user_key = user_key

    def access_token(self) -> str:
        record = self._owner._usable(self._spec, self._user_key)
        if record.access_token is not None and not record.expiring(self._owner.refresh_margin):
            return record.access_token.get_secret_value()
        stale = record.access_token.get_secret_value() if record.access_token else None
        return self._owner._refresh(self._spec, self._user_key, stale=stale, force=False)

    def refreshed_token(self, stale: str) -> str | None:
        return self._owner._refresh_or_skip(
            self._spec,
            self._user_key,
            stale=stale,
            force=True,
            min_age=self._owner.refresh_on_401_after,
        )


def _refreshed_age(record: StoredToken) -> float | None:
    """Seconds since deskwire's refresh that produced the stored access token, if known."""
    refreshed_at = record.meta.get("refreshed_at")
    if not isinstance(refreshed_at, int | float):
        return None
    return max(0.0, time.time() - float(refreshed_at))


class _Superseded(Exception):
    """The grant was refused, but another process stored newer credentials meanwhile."""

    def __init__(self, access_token: str) -> None:
        super().__init__("superseded")
        self.access_token = access_token


class Connections:
    """Connections of one deskwire installation.

    ``keys`` are the token-encryption passphrases, newest first. ``public_url`` is where
    people and OAuth providers reach deskwire; the redirect URI registered with every
    provider is ``<public_url>/connections/callback``.

    ``refresh_margin``: how long before its expiry an access token is refreshed, at most;
    never more than a tenth of the lifetime the token was issued with (see
    :meth:`StoredToken.refresh_margin`), so short-lived tokens are refreshed once per
    lifetime, not at every use. A token issued without ``expires_in`` is used until a 401.

    ``timeout`` is the per-phase timeout of HTTP calls; a token-endpoint call as a whole is
    given up after ``2 * timeout`` (and always before the refresh lock, held for at most
    ``2 * timeout + 10`` seconds, expires). ``refresh_on_401_after``: a 401 from an API
    makes deskwire refresh the access token only when deskwire's refresh that produced the
    token is at least this many seconds old; a younger token is not refreshed again and
    the 401 is handed back (a persistent 401 — wrong data centre or portal, a missing
    scope — would otherwise spend the provider's token quota on every call).
    """

    STATE_TTL = 600.0
    REFRESH_ON_401_AFTER = 60.0

    def __init__(
        self,
        config: ConnectionsConfig,
        sessions: sessionmaker[Session],
        redis: redis.Redis,
        keys: Sequence[str],
        *,
        refresh_margin: float = 300,
        timeout: float = 30,
        public_url: str,
        refresh_on_401_after: float = REFRESH_ON_401_AFTER,
    ) -> None:
        self.config = config
        self.refresh_margin = float(refresh_margin)
        self.timeout = float(timeout)
        self.refresh_on_401_after = float(refresh_on_401_after)
        self.public_url = public_url.rstrip("/")
        self._sessions = sessions
        self._redis = redis
        self._keys = tuple(keys)
        self._store = TokenStore(sessions, KeyRing(self._keys))
        self._http: httpx.Client | None = None
        self._http_pid = 0
        self._http_lock = threading.Lock()
        self._pool = SharedTransport()
        install_redactor(
            [
                param.name
                for spec in config.connections.values()
                for param in spec.service.params
                if param.placement == "query"
            ]
            + [spec.service.token_param for spec in config.connections.values()]
        )

    def __repr__(self) -> str:
        count = len(self.config.connections)
        return f"Connections({count} connections, public_url={self.public_url!r})"

    # ---- lookup ------------------------------------------------------------------------

    @property
    def redirect_uri(self) -> str:
        """The one OAuth redirect URI of this installation."""
        return self.public_url + CALLBACK_PATH

    def spec(self, link_name: str) -> ConnectionSpec:
        """The declared connection; :class:`UnknownConnectionError` names close matches."""
        spec = self.config.connections.get(link_name)
        if spec is None:
            close = difflib.get_close_matches(link_name, list(self.config.connections), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            where = self.config.path or "the connections file"
            raise UnknownConnectionError(f"no connection '{link_name}' in {where}{hint}")
        return spec

    @staticmethod
    def _user_key(spec: ConnectionSpec, user: str | None, *, required: bool = True) -> str:
        if not spec.per_user:
            return ""
        if user is None or not user.strip():
            if not required:
                return ""
            raise NotConnectedError(
                f"connection '{spec.link_name}' uses the credentials of the login user "
                "(per_user); say which user the call is for"
            )
        return user.strip().lower()

    @staticmethod
    def _require_configured(spec: ConnectionSpec) -> None:
        if spec.problem:
            raise NotConfiguredError(
                f"connection '{spec.link_name}' is not configured: {spec.problem} in "
                "deskwire's environment"
            )

    def _connect_hint(self, spec: ConnectionSpec) -> str:
        return f"open /connections/{spec.link_name}/connect"

    # ---- time limits ----------------------------------------------------------------------

    @property
    def lock_timeout(self) -> float:
        """How long the refresh lock is held at most (it expires in Redis after this)."""
        return self.timeout * 2 + 10

    def _deadline(self) -> float:
        """When a token-endpoint call started now must be given up (``time.monotonic``)."""
        return time.monotonic() + self.timeout * 2

    # ---- http ----------------------------------------------------------------------------

    def _token_http(self) -> httpx.Client:
        """The client for token endpoints; one per process (Celery forks after import)."""
        with self._http_lock:
            if self._http is None or self._http_pid != os.getpid():
                self._http = httpx.Client(
                    transport=HttpsOnlyTransport(),
                    timeout=httpx.Timeout(self.timeout),
                    follow_redirects=False,
                    verify=True,
                )
                self._http_pid = os.getpid()
            return self._http

    def close(self) -> None:
        """Close the token-endpoint client and the connection pool of the API clients."""
        if self._http is not None:
            self._http.close()
            self._http = None
        self._pool.close()

    def client(self, link_name: str, *, user: str | None = None) -> httpx.Client:
        """An ``httpx.Client`` that authenticates every request as this connection.

        HTTPS is enforced on every request (plain HTTP to loopback only), certificates are
        verified, timeouts are explicit. ``user`` picks the user's own credentials of a
        per-user connection. The caller closes the client (use it as a context manager).

        Clients are cheap: they share this process's pooled transport (TLS context and
        keep-alive connections), and the auth is built per client so credentials changed in
        the store (a reconnect) take effect at the next step.
        """
        spec = self.spec(link_name)
        self._require_configured(spec)
        user_key = self._user_key(spec, user)
        auth = self._auth(spec, user_key)
        headers: dict[str, str] = {}
        base_url = spec.base_url or ""
        if spec.service.sdp:
            endpoint = self.sdp_endpoint(link_name)
            base_url = endpoint.api_base + "/"
            headers["Accept"] = endpoint.accept
        # Its API hosts, and the hosts of its OAuth endpoints (trusted with its client
        # secret and refresh token already).
        hosts = connection_hosts(
            base_url,
            spec.base_url,
            spec.service.base_url,
            spec.authorize_url,
            spec.token_url,
            spec.refresh_url,
            spec.revoke_url,
            spec.request_token_url,
            spec.access_token_url,
            declared=(*spec.service.hosts, *spec.hosts),
        )
        # Credentials go only to the connection's own hosts, over HTTPS; answers come back
        # with the connection's secrets masked, so no echo reaches outputs or run history.
        masking = MaskingTransport(
            self._known_secrets(spec, user_key),
            [param.name for param in spec.service.params] + [spec.service.token_param],
            inner=self._pool.borrow(),  # the process's pooled connections
        )
        return httpx.Client(
            auth=auth,
            base_url=base_url,
            headers=headers,
            transport=HttpsOnlyTransport(OnlyHosts(link_name, hosts, masking)),
            timeout=httpx.Timeout(self.timeout),
            verify=True,
            follow_redirects=False,
        )

    def known_secrets(self, link_name: str, *, user: str | None = None) -> frozenset[str]:
        """Every secret of the connection deskwire holds (declared and stored), so that
        what is shown of a call that was never made (shadow mode) can be masked."""
        spec = self.spec(link_name)
        return frozenset(self._known_secrets(spec, self._user_key(spec, user, required=False)))

    def _known_secrets(self, spec: ConnectionSpec, user_key: str) -> set[str]:
        """Every secret of this connection deskwire holds: declared and stored."""
        wrapped = [
            spec.client_secret,
            spec.consumer_secret,
            spec.refresh_token,
            spec.service.client_secret,
            spec.service.consumer_secret,
            *spec.values.values(),
        ]
        record = self._store.load(spec.link_name, user_key)
        if record is not None:
            wrapped += [record.access_token, record.refresh_token, record.token_secret]
            wrapped += list(record.values.values())
        return {secret.get_secret_value() for secret in wrapped if secret is not None}

    def _auth(self, spec: ConnectionSpec, user_key: str) -> httpx.Auth:
        if spec.auth == "oauth2":
            self._usable(spec, user_key)  # fail now, with a clear error, if not connected
            return OAuth2Auth(
                spec.link_name,
                _OAuth2Tokens(self, spec, user_key),
                placement=spec.service.token_placement,
                prefix=spec.service.token_prefix,
                param=spec.service.token_param,
            )
        if spec.auth == "oauth1":
            record = self._usable(spec, user_key)
            assert spec.consumer_key is not None
            assert spec.consumer_secret is not None
            return OAuth1Auth(
                spec.link_name,
                consumer_key=spec.consumer_key,
                consumer_secret=spec.consumer_secret,
                token=record.access_token.get_secret_value() if record.access_token else None,
                token_secret=record.token_secret,
                placement=spec.service.token_placement,
            )
        values = spec.values if spec.static_credentials else self._usable(spec, user_key).values
        if spec.auth == "basic":
            return BasicAuth(spec.link_name, values["username"], values["password"])
        params = [(param, values[param.name]) for param in spec.service.params]
        if spec.key_header:  # sdp_onprem on a build that reads another header
            params = [(dataclasses.replace(param, name=spec.key_header), v) for param, v in params]
        return ApiKeyAuth(spec.link_name, params)

    # ---- records -------------------------------------------------------------------------

    def _drift(self, spec: ConnectionSpec, record: StoredToken) -> str | None:
        """Why stored credentials no longer fit the declared connection, if they do not."""
        if record.service != spec.service.key:
            return f"its service changed from {record.service} to {spec.service.key}"
        if record.auth != spec.auth:
            return f"its auth type changed from {record.auth} to {spec.auth}"
        if spec.auth == "oauth2":
            if record.grant_type != spec.grant_type:
                return f"its grant type changed from {record.grant_type} to {spec.grant_type}"
            added = [s for s in spec.scopes if s not in record.scopes]
            removed = [s for s in record.scopes if s not in spec.scopes]
            if added or removed:
                parts = []
                if added:
                    parts.append("added " + ", ".join(added))
                if removed:
                    parts.append("removed " + ", ".join(removed))
                return f"its scopes changed ({'; '.join(parts)})"
        return None

    def _current(self, spec: ConnectionSpec, user_key: str) -> StoredToken | None:
        """The stored row, revoked first if the declaration drifted, bootstrapped if due."""
        record = self._store.load(spec.link_name, user_key)
        if record is not None and record.status == TokenStatus.CONNECTED:
            drift = self._drift(spec, record)
            if drift:
                self._store.mark(spec.link_name, user_key, TokenStatus.REVOKED, drift)
                record = self._store.load(spec.link_name, user_key)
        if self._bootstrap_due(spec, user_key, record):
            assert spec.refresh_token is not None
            self._bootstrap(spec, user_key, spec.refresh_token)
            record = self._store.load(spec.link_name, user_key)
        return record

    @staticmethod
    def _bootstrap_due(spec: ConnectionSpec, user_key: str, record: StoredToken | None) -> bool:
        if spec.auth != "oauth2" or spec.refresh_token is None or user_key:
            return False
        if record is None:
            return True
        fresh = digest(spec.refresh_token.get_secret_value()) != record.bootstrap_digest
        # A new token in the environment replaces one bootstrapped before, and revives a
        # revoked connection; it does not override a connection made by the code flow.
        return fresh and (record.bootstrap_digest is not None or record.status != "connected")

    def _usable(self, spec: ConnectionSpec, user_key: str) -> StoredToken:
        """Stored credentials that may be used, or the error that says why not."""
        record = self._current(spec, user_key)
        who = f" for user {user_key}" if user_key else ""
        if record is None:
            if spec.auth == "oauth2" and spec.grant_type == "client_credentials":
                return StoredToken(
                    link_name=spec.link_name,
                    user_key=user_key,
                    status=TokenStatus.CONNECTED,
                    service=spec.service.key,
                    auth=spec.auth,
                    grant_type=spec.grant_type,
                    scopes=spec.scopes,
                )
            if user_key:
                raise NotConnectedError(
                    f"user {user_key} has not connected connection '{spec.link_name}' yet; "
                    f"they should {self._connect_hint(spec)} (signed in as themselves)"
                )
            raise NotConnectedError(
                f"connection '{spec.link_name}' is not connected; {self._connect_hint(spec)}"
            )
        if record.status == TokenStatus.NEEDS_RECONNECT:
            raise NeedsReconnectError(spec.link_name, record.error or "the grant was refused")
        if record.status == TokenStatus.REVOKED:
            raise ConnectionRevokedError(
                f"connection '{spec.link_name}'{who} was revoked ({record.error or 'by an admin'});"
                f" {self._connect_hint(spec)} to connect it again"
            )
        return record

    # ---- refresh -------------------------------------------------------------------------

    @staticmethod
    def _lock_name(spec: ConnectionSpec, user_key: str) -> str:
        return f"deskwire:connections:refresh:{spec.link_name}:{digest(user_key)[:16]}"

    @contextmanager
    def _refresh_lock(self, spec: ConnectionSpec, user_key: str) -> Iterator[float]:
        """One refresh at a time per (connection, user), across every process.

        Yields the deadline (``time.monotonic``) of the token calls made under the lock:
        10 s before the lock expires, so the reply is stored while the lock is still held.
        """
        lock = self._redis.lock(
            self._lock_name(spec, user_key),
            timeout=self.lock_timeout,
            blocking_timeout=self.timeout + 10,
            thread_local=False,
        )
        try:
            acquired = lock.acquire()
        except RedisError as exc:
            raise TransientTokenError(
                f"refreshing connection '{spec.link_name}' needs the Redis lock, and Redis "
                f"failed: {type(exc).__name__}"
            ) from None
        if not acquired:
            raise TransientTokenError(
                f"another process has been refreshing connection '{spec.link_name}' for too "
                "long; will retry"
            )
        try:
            yield self._deadline()
        finally:
            # Expired meanwhile: the next refresher takes over.
            with suppress(LockNotOwnedError, LockError, RedisError):
                lock.release()

    def _refresh(
        self, spec: ConnectionSpec, user_key: str, *, stale: str | None, force: bool
    ) -> str:
        token = self._refresh_or_skip(spec, user_key, stale=stale, force=force, min_age=None)
        assert token is not None  # only a min_age skips
        return token

    def _refresh_or_skip(
        self,
        spec: ConnectionSpec,
        user_key: str,
        *,
        stale: str | None,
        force: bool,
        min_age: float | None,
    ) -> str | None:
        """A usable access token, refreshed if needed (``force``: other than ``stale``).

        With ``min_age`` (after a 401): ``None`` instead of a refresh when ``stale`` is still
        the stored token and deskwire's refresh that produced it is younger than
        ``min_age`` seconds: refreshing again would not cure the 401.
        """
        with self._refresh_lock(spec, user_key) as deadline:
            record = self._usable(spec, user_key)  # re-read: another process may have refreshed
            current = record.access_token.get_secret_value() if record.access_token else None
            fresh = current is not None and not record.expiring(self.refresh_margin)
            if fresh and (current != stale or not force):
                return current
            if fresh and min_age is not None:
                age = _refreshed_age(record)
                if age is not None and age < min_age:
                    log.warning(
                        "connection %r%s: the API answered 401 to an access token refreshed "
                        "%.0f s ago; not refreshing again within %.0f s (a persistent 401 "
                        "means a wrong data centre, portal or scope rather than an old token)",
                        spec.link_name,
                        f" (user {user_key})" if user_key else "",
                        age,
                        min_age,
                    )
                    return None
            try:
                reply = self._grant(spec, user_key, record, deadline=deadline)
            except _Superseded as newer:
                return newer.access_token
            self._store_reply(spec, user_key, record, reply, refreshed=True)
            return reply.access_token.get_secret_value()

    def _grant(
        self, spec: ConnectionSpec, user_key: str, record: StoredToken, *, deadline: float
    ) -> TokenReply:
        """Ask the token endpoint for a new access token (refresh or client credentials).

        A refused grant marks the row *needs reconnect* only if it is still the one
        ``record`` was read from (compare-and-set on its version); if another process stored
        newer credentials meanwhile (its refresh lock had expired), :class:`_Superseded`
        carries them instead. A refused client (``invalid_client`` …) raises
        :class:`~connections.errors.ClientAuthError` and keeps the grant.
        """
        assert spec.client_id is not None
        assert spec.client_secret is not None
        form: dict[str, str]
        if spec.grant_type == "client_credentials":
            form = {"grant_type": "client_credentials"}
            if spec.scopes:
                form["scope"] = spec.scope_string
            url = spec.token_url
            what = "client credentials token request"
        else:
            if record.refresh_token is None:
                reason = "the access token expired or was refused and there is no refresh token"
                raise self._refused(spec, user_key, record, reason)
            form = {
                "grant_type": "refresh_token",
                "refresh_token": record.refresh_token.get_secret_value(),
            }
            url = record.meta.get("token_url") or spec.refresh_url or spec.token_url
            what = "token refresh"
        assert url is not None
        try:
            return request_token(
                self._token_http(),
                link_name=spec.link_name,
                url=str(url),
                form=form,
                client_id=spec.client_id,
                client_secret=spec.client_secret,
                client_auth=spec.service.client_auth,
                what=what,
                deadline=deadline,
            )
        except GrantRevokedError as exc:
            raise self._refused(spec, user_key, record, exc.code) from None

    def _refused(
        self, spec: ConnectionSpec, user_key: str, record: StoredToken, reason: str
    ) -> Exception:
        """Mark the row *needs reconnect* unless it changed since ``record`` was read, and
        return the error to raise: :class:`NeedsReconnectError`, or :class:`_Superseded`
        with the newer credentials (``_usable`` raises for a row revoked meanwhile)."""
        marked = record.version == 0 or self._store.mark(
            spec.link_name,
            user_key,
            TokenStatus.NEEDS_RECONNECT,
            reason,
            expected_version=record.version,
        )
        if not marked:
            latest = self._store.load(spec.link_name, user_key)
            if (
                latest is not None
                and latest.status == TokenStatus.CONNECTED
                and latest.access_token is not None
            ):
                log.warning(
                    "connection %r: the provider refused the grant read at version %d, but "
                    "another process stored newer credentials meanwhile (version %d); using them",
                    spec.link_name,
                    record.version,
                    latest.version,
                )
                return _Superseded(latest.access_token.get_secret_value())
            if latest is not None and latest.status == TokenStatus.CONNECTED:
                return TransientTokenError(
                    f"connection '{spec.link_name}' changed while it was being refreshed; "
                    "will retry"
                )
            self._usable(spec, user_key)  # raises the error of the row's new state
        return NeedsReconnectError(spec.link_name, reason)

    def _store_reply(
        self,
        spec: ConnectionSpec,
        user_key: str,
        record: StoredToken,
        reply: TokenReply,
        *,
        meta: Mapping[str, Any] | None = None,
        bootstrap_digest: str | None = None,
        refreshed: bool = False,
    ) -> None:
        if refreshed:  # for /metrics, across every process (never fails the refresh)
            MetricsStore(self._redis).count("token_refreshes", {"connection": spec.link_name})
        refresh = reply.refresh_token or record.refresh_token  # Zoho never rotates it
        # When deskwire last refreshed (epoch seconds); a token from a code exchange has none.
        # The lifetime as issued sets the refresh margin (StoredToken.refresh_margin); a
        # token without expires_in drops the previous token's.
        when = {
            "refreshed_at": time.time() if refreshed else None,
            "lifetime": reply.expires_in or None,
        }
        self._store.save(
            spec.link_name,
            user_key,
            service=spec.service.key,
            auth=spec.auth,
            grant_type=spec.grant_type,
            scopes=spec.scopes,
            secrets={
                "access_token": reply.access_token.get_secret_value(),
                "refresh_token": refresh.get_secret_value() if refresh else None,
            },
            expires_at=(
                utcnow() + timedelta(seconds=reply.expires_in) if reply.expires_in else None
            ),
            meta={
                key: value
                for key, value in {**record.meta, **reply.meta, **(meta or {}), **when}.items()
                if value is not None
            },
            bootstrap_digest=bootstrap_digest,
        )

    def refresh(self, link_name: str, *, user: str | None = None) -> ConnectionStatus:
        """Fetch a new access token now (OAuth 2.0): checks the grant, connects client
        credentials. Raises the same errors as a use would."""
        spec = self.spec(link_name)
        self._require_configured(spec)
        if spec.auth != "oauth2":
            raise UnsupportedOperationError(
                f"connection '{link_name}' uses {spec.auth}; only OAuth 2.0 tokens are refreshed"
            )
        user_key = self._user_key(spec, user)
        record = self._usable(spec, user_key)
        stale = record.access_token.get_secret_value() if record.access_token else None
        self._refresh(spec, user_key, stale=stale, force=True)
        return self.status(link_name, user=user)

    def bootstrap_refresh_token(
        self, link_name: str, refresh_token: str | None = None, *, user: str | None = None
    ) -> ConnectionStatus:
        """Connect an OAuth 2.0 connection from a refresh token (e.g. a Zoho Self Client's).

        Without ``refresh_token`` the one from the file (``refresh_token: ${ENV}``) is used.
        The token is tried at once, so a bad one fails here rather than in a rule.
        """
        spec = self.spec(link_name)
        self._require_configured(spec)
        if spec.auth != "oauth2" or spec.grant_type != "authorization_code":
            raise UnsupportedOperationError(
                f"connection '{link_name}' does not use the authorization_code grant; a refresh "
                "token does not apply"
            )
        token = SecretStr(refresh_token) if refresh_token else spec.refresh_token
        if token is None:
            raise NotConnectedError(
                f"no refresh token given for connection '{link_name}', and none is set in the "
                "connections file (refresh_token: ${ENV_NAME})"
            )
        self._bootstrap(spec, self._user_key(spec, user), token)
        return self.status(link_name, user=user)

    def _bootstrap(self, spec: ConnectionSpec, user_key: str, token: SecretStr) -> None:
        marker = digest(token.get_secret_value())
        with self._refresh_lock(spec, user_key) as deadline:
            existing = self._store.load(spec.link_name, user_key)
            if (
                existing is not None
                and existing.bootstrap_digest == marker
                and (existing.status == TokenStatus.CONNECTED)
            ):
                return  # another process bootstrapped this very token meanwhile
            self._store.save(
                spec.link_name,
                user_key,
                service=spec.service.key,
                auth=spec.auth,
                grant_type=spec.grant_type,
                scopes=spec.scopes,
                secrets={"refresh_token": token.get_secret_value()},
                expires_at=None,
                meta={},
                bootstrap_digest=marker,
                new_connection=True,
            )
            record = self._store.load(spec.link_name, user_key)
            assert record is not None
            try:
                reply = self._grant(spec, user_key, record, deadline=deadline)
            except _Superseded:
                return  # another process connected it meanwhile
            self._store_reply(
                spec, user_key, record, reply, bootstrap_digest=marker, refreshed=True
            )

    # ---- status --------------------------------------------------------------------------

    def _status(
        self, spec: ConnectionSpec, state: ConnectionState, message: str, **extra: Any
    ) -> ConnectionStatus:
        return ConnectionStatus(
            link_name=spec.link_name,
            name=spec.name,
            service=spec.service.key,
            service_name=spec.service.name,
            auth=spec.auth,
            state=state,
            message=message,
            per_user=spec.per_user,
            grant_type=spec.grant_type,
            scopes=spec.scopes,
            **extra,
        )

    def status(self, link_name: str, *, user: str | None = None) -> ConnectionStatus:
        """Connected / not connected / not configured / revoked / needs reconnect, and why."""
        spec = self.spec(link_name)
        if spec.problem:
            return self._status(
                spec, ConnectionState.NOT_CONFIGURED, f"not configured: {spec.problem}"
            )
        if spec.static_credentials:
            return self._status(
                spec, ConnectionState.CONNECTED, "connected: credentials from the connections file"
            )
        if spec.per_user and not (user and user.strip()):
            rows = [r for r in self._store.users(link_name) if r.user_key]
            count = sum(
                1 for r in rows if r.status == TokenStatus.CONNECTED and not self._drift(spec, r)
            )
            if count:
                message = f"connected for {count} user{'s' if count != 1 else ''}"
                return self._status(spec, ConnectionState.CONNECTED, message, users_connected=count)
            return self._status(
                spec,
                ConnectionState.NOT_CONNECTED,
                "each user connects with their own account; nobody has connected yet",
            )
        user_key = self._user_key(spec, user)
        extra: dict[str, Any] = {"user": user_key or None}
        try:
            record = self._current(spec, user_key)
        except NeedsReconnectError as exc:
            return self._status(
                spec,
                ConnectionState.NEEDS_RECONNECT,
                f"needs to be reconnected: {exc.reason}",
                **extra,
            )
        except TransientTokenError as exc:
            return self._status(
                spec, ConnectionState.NOT_CONNECTED, f"not connected yet: {exc}", **extra
            )
        if record is None:
            if spec.auth == "oauth2" and spec.grant_type == "client_credentials":
                message = "client credentials: a token is fetched on first use"
            elif user_key:
                message = f"not connected for user {user_key}: {self._connect_hint(spec)}"
            else:
                message = f"not connected: {self._connect_hint(spec)}"
            return self._status(spec, ConnectionState.NOT_CONNECTED, message, **extra)
        extra.update(expires_at=record.expires_at, connected_at=record.connected_at)
        if record.status == TokenStatus.NEEDS_RECONNECT:
            return self._status(
                spec,
                ConnectionState.NEEDS_RECONNECT,
                f"needs to be reconnected: {record.error} — {self._connect_hint(spec)}",
                **extra,
            )
        if record.status == TokenStatus.REVOKED:
            return self._status(
                spec,
                ConnectionState.REVOKED,
                f"revoked: {record.error or 'by an admin'} — {self._connect_hint(spec)}",
                **extra,
            )
        message = "connected"
        if record.expires_at is not None:
            message += f"; access token valid until {record.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        return self._status(spec, ConnectionState.CONNECTED, message, **extra)

    def list(self, *, user: str | None = None) -> list[ConnectionStatus]:
        """The status of every declared connection, by link name."""
        return [self.status(name, user=user) for name in sorted(self.config.connections)]

    # ---- SDP -----------------------------------------------------------------------------

    def sdp_endpoint(self, link_name: str) -> SdpEndpoint:
        """The REST API v3 base and Accept header of an ``sdp`` / ``sdp_onprem`` connection.

        Cloud base: the connection's explicit ``base_url`` (custom domain) if set; else the
        token reply's ``api_domain`` when that is an SDP host; else the data centre the
        token came from; else the configured data centre. ``/app/<portal>`` is added when
        a portal is set.
        """
        spec = self.spec(link_name)
        kind = spec.service.sdp
        if kind is None:
            raise UnsupportedOperationError(
                f"connection '{link_name}' uses service {spec.service.key}, not sdp or sdp_onprem"
            )
        accept = spec.accept or "application/vnd.manageengine.sdp.v3+json"
        if kind == "onprem":
            if not spec.base_url:
                self._require_configured(spec)
            return SdpEndpoint(link_name, f"{spec.base_url}/api/v3", accept, onprem=True)
        base = spec.base_url_override
        if base is None:
            record = self._store.load(link_name, "")
            meta = record.meta if record is not None else {}
            hosts = {
                httpx.URL(dc.base_url).host: dc.base_url
                for dc in spec.service.data_centres.values()
                if dc.base_url
            }
            api_domain = str(meta.get("api_domain") or "")
            location = str(meta.get("data_centre") or "")
            if api_domain and httpx.URL(api_domain).host in hosts:
                base = hosts[httpx.URL(api_domain).host]
            elif location in spec.service.data_centres:
                base = spec.service.data_centres[location].base_url
        base = (base or spec.base_url or "").rstrip("/")
        portal = f"/app/{quote(spec.portal)}" if spec.portal else ""
        return SdpEndpoint(link_name, f"{base}{portal}/api/v3", accept, onprem=False)

    # ---- connecting ----------------------------------------------------------------------

    def authorize_url(self, link_name: str, user: str | None = None) -> str:
        """Start a connect: the provider URL to send the person to (OAuth 2.0 code flow with
        state and PKCE S256, or OAuth 1.0a after fetching a request token)."""
        return self.begin_connect(link_name, user=user).url

    @staticmethod
    def callback_key(query: Mapping[str, str]) -> str | None:
        """The attempt key a callback carries (see :class:`ConnectAttempt`), if any."""
        if "oauth_token" in query and "state" not in query:
            return query["oauth_token"] or None
        return query.get("state") or None

    def begin_connect(self, link_name: str, user: str | None = None) -> ConnectAttempt:
        """Start a connect like :meth:`authorize_url`, and also return the attempt's key."""
        spec = self.spec(link_name)
        self._require_configured(spec)
        user_key = self._user_key(spec, user)
        if spec.auth == "oauth1":
            return self._oauth1_attempt(spec, user_key)
        if spec.auth != "oauth2" or spec.grant_type != "authorization_code":
            raise UnsupportedOperationError(
                f"connection '{link_name}' uses {spec.auth}"
                + (f" ({spec.grant_type})" if spec.grant_type else "")
                + "; it is connected without a browser redirect"
            )
        assert spec.authorize_url is not None
        assert spec.client_id is not None
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        params: dict[str, str] = {
            "response_type": "code",
            "client_id": spec.client_id,
            "redirect_uri": self.redirect_uri,
            "state": state,
        }
        if spec.service.pkce:
            params["code_challenge"] = create_s256_code_challenge(verifier)
            params["code_challenge_method"] = "S256"
        params.update(spec.service.authorize_params)
        query = urlencode(params, quote_via=quote)
        if spec.scopes:
            # comma and space are percent-encoded; "plus" joins with a literal +.
            joined = [quote(scope, safe="") for scope in spec.scopes]
            separator = (
                "+"
                if spec.scope_delimiter == "plus"
                else quote(SCOPE_DELIMITERS[spec.scope_delimiter], safe="")
            )
            query += "&scope=" + separator.join(joined)
        self._store.put_state(
            state,
            link_name=spec.link_name,
            user_key=user_key,
            redirect_uri=self.redirect_uri,
            secret={"code_verifier": verifier, "kind": "oauth2"},
            ttl=self.STATE_TTL,
        )
        separator = "&" if "?" in spec.authorize_url else "?"
        return ConnectAttempt(f"{spec.authorize_url}{separator}{query}", state)

    def _oauth1_attempt(self, spec: ConnectionSpec, user_key: str) -> ConnectAttempt:
        assert spec.consumer_key
        assert spec.consumer_secret
        assert spec.request_token_url
        assert spec.authorize_url
        reply = fetch_oauth1_token(
            self._token_http(),
            link_name=spec.link_name,
            url=spec.request_token_url,
            consumer_key=spec.consumer_key,
            consumer_secret=spec.consumer_secret,
            placement=spec.service.token_placement,
            callback=self.redirect_uri,
            what="request token request",
            deadline=self._deadline(),
        )
        request_token_value = reply.access_token.get_secret_value()
        assert reply.token_secret is not None
        self._store.put_state(
            "oauth1:" + request_token_value,
            link_name=spec.link_name,
            user_key=user_key,
            redirect_uri=self.redirect_uri,
            secret={
                "kind": "oauth1",
                "request_token": request_token_value,
                "request_token_secret": reply.token_secret.get_secret_value(),
            },
            ttl=self.STATE_TTL,
        )
        separator = "&" if "?" in spec.authorize_url else "?"
        query = urlencode({"oauth_token": request_token_value})
        return ConnectAttempt(f"{spec.authorize_url}{separator}{query}", request_token_value)

    def complete_callback(self, query: Mapping[str, str]) -> str:
        """Finish a connect from the provider's redirect to ``/connections/callback``.

        Validates the single-use state (mismatch, expiry and replay are refused), honours
        Zoho's ``location`` / ``accounts-server``, exchanges the code (or the OAuth 1.0a
        verifier) and stores the tokens. Returns the link name.
        """
        if "oauth_token" in query and "state" not in query:
            return self._complete_oauth1(query)
        state = self.callback_key(query)
        if not state:
            raise OAuthCallbackError("the callback has no state; start the connect again")
        pending = self._store.take_state(state)
        spec = self.spec(pending.link_name)
        if query.get("error"):
            description = " ".join(str(query.get("error_description", "")).split())[:200]
            raise OAuthCallbackError(
                f"the provider refused connection '{spec.link_name}': {query['error']}"
                + (f" ({description})" if description else "")
            )
        code = query.get("code")
        if not code:
            raise OAuthCallbackError(
                f"the callback for connection '{spec.link_name}' has no code; start again"
            )
        self._require_configured(spec)
        assert spec.client_id is not None
        assert spec.client_secret is not None
        token_url, meta = self._zoho_server(spec, query)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
        }
        if spec.service.pkce and pending.secret.get("code_verifier"):
            form["code_verifier"] = pending.secret["code_verifier"]
        try:
            reply = request_token(
                self._token_http(),
                link_name=spec.link_name,
                url=token_url,
                form=form,
                client_id=spec.client_id,
                client_secret=spec.client_secret,
                client_auth=spec.service.client_auth,
                what="code exchange",
                deadline=self._deadline(),
            )
        except GrantRevokedError as exc:
            raise OAuthCallbackError(
                f"connection '{spec.link_name}': the provider refused the code ({exc}); start "
                "the connect again"
            ) from None
        empty = StoredToken(
            link_name=spec.link_name,
            user_key=pending.user_key,
            status=TokenStatus.CONNECTED,
            service=spec.service.key,
            auth=spec.auth,
            grant_type=spec.grant_type,
            scopes=spec.scopes,
        )
        self._store_reply(spec, pending.user_key, empty, reply, meta=meta)
        return spec.link_name

    def _zoho_server(
        self, spec: ConnectionSpec, query: Mapping[str, str]
    ) -> tuple[str, dict[str, Any]]:
        """The token URL for a code exchange, and what to remember about the data centre."""
        assert spec.token_url is not None
        centres = spec.service.data_centres
        if not centres:
            return spec.token_url, {}
        meta: dict[str, Any] = {}
        location = str(query.get("location", "")).lower()
        if location in centres:
            meta["data_centre"] = location
        server = query.get("accounts-server")
        if not server:
            return spec.token_url, meta
        server = server.rstrip("/")
        allowed = {dc.accounts_url.rstrip("/") for dc in centres.values()}
        if spec.accounts_url:
            allowed.add(spec.accounts_url.rstrip("/"))
        if server not in allowed:
            raise OAuthCallbackError(
                f"the callback for connection '{spec.link_name}' names accounts server "
                f"{httpx.URL(server).host or server!r}, which is not a known Zoho accounts "
                "server; the code was not exchanged"
            )
        for key, centre in centres.items():
            if centre.accounts_url.rstrip("/") == server:
                meta.setdefault("data_centre", key)
        token_url = f"{server}/oauth/v2/token"
        if token_url != spec.token_url:
            meta["token_url"] = token_url
        return token_url, meta

    def _complete_oauth1(self, query: Mapping[str, str]) -> str:
        request_token_value = query["oauth_token"]
        pending = self._store.take_state("oauth1:" + request_token_value)
        spec = self.spec(pending.link_name)
        verifier = query.get("oauth_verifier")
        if not verifier:
            raise OAuthCallbackError(
                f"the callback for connection '{spec.link_name}' has no oauth_verifier; the "
                "authorization was denied or incomplete"
            )
        self._require_configured(spec)
        assert spec.consumer_key
        assert spec.consumer_secret
        assert spec.access_token_url
        try:
            reply = fetch_oauth1_token(
                self._token_http(),
                link_name=spec.link_name,
                url=spec.access_token_url,
                consumer_key=spec.consumer_key,
                consumer_secret=spec.consumer_secret,
                placement=spec.service.token_placement,
                token=request_token_value,
                token_secret=SecretStr(pending.secret["request_token_secret"]),
                verifier=verifier,
                what="access token request",
                deadline=self._deadline(),
            )
        except GrantRevokedError as exc:
            raise OAuthCallbackError(
                f"connection '{spec.link_name}': the provider refused the verifier ({exc})"
            ) from None
        assert reply.token_secret is not None
        self._store.save(
            spec.link_name,
            pending.user_key,
            service=spec.service.key,
            auth=spec.auth,
            grant_type=None,
            scopes=(),
            secrets={
                "access_token": reply.access_token.get_secret_value(),
                "token_secret": reply.token_secret.get_secret_value(),
            },
            expires_at=None,
            meta={},
            new_connection=True,
        )
        return spec.link_name

    def connect_static(
        self, link_name: str, values: Mapping[str, str], *, user: str | None = None
    ) -> ConnectionStatus:
        """Store API key parameters (by parameter name) or Basic ``username``/``password``."""
        spec = self.spec(link_name)
        if spec.auth not in ("api_key", "basic"):
            raise UnsupportedOperationError(
                f"connection '{link_name}' uses {spec.auth}; connect it through "
                f"/connections/{link_name}/connect"
            )
        if spec.static_credentials:
            raise UnsupportedOperationError(
                f"connection '{link_name}' takes its credentials from the connections file "
                "(values:); change them there"
            )
        expected = (
            [param.name for param in spec.service.params]
            if spec.auth == "api_key"
            else ["username", "password"]
        )
        missing = [name for name in expected if not str(values.get(name) or "").strip()]
        unknown = [name for name in values if name not in expected]
        problems = []
        if missing:
            problems.append("missing " + ", ".join(missing))
        if unknown:
            problems.append("unknown " + ", ".join(unknown) + f" (expected {', '.join(expected)})")
        if problems:
            raise ConnectionsError(f"connection '{link_name}': " + "; ".join(problems))
        user_key = self._user_key(spec, user)
        self._store.save(
            link_name,
            user_key,
            service=spec.service.key,
            auth=spec.auth,
            grant_type=None,
            scopes=(),
            secrets={"values": {name: str(values[name]) for name in expected}},
            expires_at=None,
            meta={},
            new_connection=True,
        )
        return self.status(link_name, user=user)

    # ---- revoke, delete, keys -------------------------------------------------------------

    def revoke(self, link_name: str, *, user: str | None = None) -> RevokeOutcome:
        """Revoke at the provider where it has a revoke URL (best effort), then forget the
        tokens. For a per-user connection without ``user``: every user's tokens."""
        spec = self.spec(link_name)
        if spec.static_credentials:
            raise UnsupportedOperationError(
                f"connection '{link_name}' takes its credentials from the connections file; "
                "remove them there"
            )
        user_key = self._user_key(spec, user, required=False)
        records = (
            self._store.users(link_name)
            if spec.per_user and not user_key
            else [r for r in [self._store.load(link_name, user_key)] if r is not None]
        )
        confirmed: bool | None = None
        notes: list[str] = []
        if spec.auth == "oauth2" and spec.revoke_url and spec.problem is None:
            for record in records:
                token = record.refresh_token or record.access_token
                if record.status != TokenStatus.CONNECTED or token is None:
                    continue
                try:
                    revoke_token(
                        self._token_http(),
                        link_name=link_name,
                        url=spec.revoke_url,
                        style=spec.service.revoke_style,
                        token=token,
                        token_type_hint="refresh_token" if record.refresh_token else "access_token",
                        client_id=spec.client_id,
                        client_secret=spec.client_secret,
                        client_auth=spec.service.client_auth,
                        deadline=self._deadline(),
                    )
                    confirmed = True if confirmed is None else confirmed
                except ConnectionsError as exc:
                    confirmed = False
                    notes.append(str(exc))
        self._store.mark(
            link_name,
            None if (spec.per_user and not user_key) else user_key,
            TokenStatus.REVOKED,
            "revoked by an admin",
        )
        if confirmed is None:
            message = "tokens forgotten (the service has no revoke URL)"
        elif confirmed:
            message = "revoked at the provider; tokens forgotten"
        else:
            message = "tokens forgotten; the provider did not confirm: " + "; ".join(notes)
        return RevokeOutcome(link_name, confirmed, message)

    def delete(self, link_name: str, used_by: Mapping[str, Sequence[str]]) -> RevokeOutcome:
        """Revoke and forget a connection's tokens; refused while rules use it.

        ``used_by`` maps link names to the ids of the rules that use them. Removing the
        declaration from ``connections.yml`` is the caller's part (see
        :func:`connections.yamlfile.remove_connection`).
        """
        spec = self.spec(link_name)
        rules = list(used_by.get(link_name, ()))
        if rules:
            raise ConnectionInUseError(link_name, rules)
        outcome = RevokeOutcome(link_name, None, "nothing stored")
        if not spec.static_credentials:
            outcome = self.revoke(link_name)
        self._store.delete(link_name)
        return outcome

    def rotate_keys(self) -> int:
        """Re-encrypt every stored secret with the newest key; return how many were."""
        return rotate_keys(self._sessions, self._keys)
