"""The facade the worker, the web pages and the CLI use: :class:`Connections`.

It composes the parsed configuration, the stored credentials
(:class:`~connections.credentials.CredentialKeeper`) and the auth strategies
(:func:`~connections.auth_types.strategy_for`, one per auth type), and hands out
authenticated ``httpx.Client`` objects. What differs between auth types lives in the
strategies; what is common (lookup, status, revoke and delete, the outbound client) here.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

import httpx
import redis
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from connections import refresh
from connections.auth_oauth1 import STATE_PREFIX as OAUTH1_STATE_PREFIX
from connections.auth_strategy import AuthStrategy
from connections.auth_types import strategy_for
from connections.config import ConnectionsConfig
from connections.credentials import CredentialKeeper
from connections.current_credentials import CurrentCredentials
from connections.errors import (
    ConnectionInUseError,
    OAuthCallbackError,
    UnknownConnectionError,
    UnsupportedOperationError,
)
from connections.outbound import OnlyHosts, connection_hosts
from connections.pooled_clients import ClientPool, ClientShape, SharedClient
from connections.results import (
    CALLBACK_PATH,
    ConnectAttempt,
    ConnectionState,
    ConnectionStatus,
    RevokeOutcome,
    SdpEndpoint,
)
from connections.sdp_endpoint import sdp_endpoint
from connections.secret_masking import MaskingTransport
from connections.specs import ConnectionSpec
from connections.status import connection_status
from connections.store import KeyRing, StoredToken, TokenStatus, TokenStore, rotate_keys
from connections.transport import HttpsOnlyTransport, SharedTransport, install_redactor

__all__ = [
    "CALLBACK_PATH",
    "ConnectAttempt",
    "ConnectionState",
    "ConnectionStatus",
    "Connections",
    "RevokeOutcome",
    "SdpEndpoint",
]


def _declared_secrets(spec: ConnectionSpec) -> frozenset[str]:
    """The secrets the connections file gives the connection (or its service)."""
    return frozenset(s.get_secret_value() for s in spec.declared_secrets if s is not None)


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

    STATE_TTL = CredentialKeeper.STATE_TTL
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
        self.public_url = public_url.rstrip("/")
        self._sessions = sessions
        self._redis = redis
        self._keys = tuple(keys)
        self._store = TokenStore(sessions, KeyRing(self._keys))
        self._keeper = CredentialKeeper(
            self._store,
            redis,
            timeout=timeout,
            refresh_margin=refresh_margin,
            refresh_on_401_after=refresh_on_401_after,
            redirect_uri=self.redirect_uri,
        )
        self._pool = SharedTransport()
        self._clients = ClientPool()
        install_redactor(
            [
                name
                for spec in config.connections.values()
                for name in spec.service.query_secret_params
            ]
        )

    def __repr__(self) -> str:
        count = len(self.config.connections)
        return f"Connections({count} connections, public_url={self.public_url!r})"

    # ---- settings ------------------------------------------------------------------------

    @property
    def timeout(self) -> float:
        """The per-phase timeout of HTTP calls, in seconds."""
        return self._keeper.timeout

    @property
    def refresh_margin(self) -> float:
        """How long before its expiry an access token is refreshed, at most."""
        return self._keeper.refresh_margin

    @property
    def refresh_on_401_after(self) -> float:
        """How old a refreshed token must be before a 401 refreshes it again."""
        return self._keeper.refresh_on_401_after

    @property
    def lock_timeout(self) -> float:
        """How long the refresh lock is held at most (it expires in Redis after this)."""
        return self._keeper.lock_timeout

    @staticmethod
    def _lock_name(spec: ConnectionSpec, user_key: str) -> str:
        return refresh.lock_name(spec, user_key)

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

    def _strategy(self, spec: ConnectionSpec) -> AuthStrategy:
        return strategy_for(self._keeper, spec)

    # ---- http ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the token-endpoint client and the connection pool of the API clients."""
        self._keeper.close()
        self._clients.clear()
        self._pool.close()

    def client(self, link_name: str, *, user: str | None = None) -> httpx.Client:
        """An ``httpx.Client`` that authenticates every request as this connection.

        HTTPS is enforced on every request (plain HTTP to loopback only), certificates are
        verified, timeouts are explicit. ``user`` picks the user's own credentials of a
        per-user connection. A connection that may not be used (not connected, revoked,
        needs a reconnect) is refused here, with the error that says why.

        The client is this process's one client of the connection (and user), shared by
        every caller (:mod:`connections.pooled_clients`): ``with client:`` and ``close()``
        leave it open. Credentials are read at each request, so a reconnect or a refresh
        elsewhere applies at the next one.
        """
        return self._lease(link_name, user, sdp=False)[0]

    def sdp_client(
        self, link_name: str, *, user: str | None = None
    ) -> tuple[httpx.Client, SdpEndpoint]:
        """:meth:`client` of an ``sdp`` / ``sdp_onprem`` connection and its endpoint, read
        together (one store read)."""
        client, endpoint = self._lease(link_name, user, sdp=True)
        assert endpoint is not None
        return client, endpoint

    def _lease(
        self, link_name: str, user: str | None, *, sdp: bool
    ) -> tuple[httpx.Client, SdpEndpoint | None]:
        spec = self.spec(link_name)
        self._keeper.require_configured(spec)
        if sdp and not spec.service.sdp:
            sdp_endpoint(self._keeper, spec)  # refuses: not an SDP connection
        user_key = self._keeper.user_key(spec, user)
        strategy = self._strategy(spec)
        # Refuses an unusable connection now, with the error that says why; the client's
        # next request on this thread uses this read (connections/current_credentials.py).
        writes = TokenStore.writes  # before the read: a write after it voids the prime
        record = strategy.credentials(user_key)
        endpoint: SdpEndpoint | None = None
        if spec.service.sdp:
            shared = (lambda: record) if not user_key else None
            endpoint = sdp_endpoint(self._keeper, spec, shared)
        shape = ClientShape(
            spec,
            endpoint.api_base + "/" if endpoint else spec.base_url or "",
            endpoint.accept if endpoint else None,
        )
        client = self._clients.get(
            user_key, shape, lambda: self._build(spec, strategy, user_key, record, shape)
        )
        if isinstance(client.auth, CurrentCredentials):
            client.auth.prime(record, writes)  # its next request uses this read
        return client, endpoint

    def _build(
        self,
        spec: ConnectionSpec,
        strategy: AuthStrategy,
        user_key: str,
        record: StoredToken | None,
        shape: ClientShape,
    ) -> SharedClient:
        """The connection's client: checked transports around the process's pool."""
        # Its API hosts, and the hosts of its OAuth endpoints (trusted with its client
        # secret and refresh token already).
        hosts = connection_hosts(
            shape.base_url,
            spec.base_url,
            spec.service.base_url,
            *spec.endpoint_urls,
            declared=(*spec.service.hosts, *spec.hosts),
        )
        # Credentials go only to the connection's own hosts, over HTTPS; answers come back
        # with the connection's secrets masked (the declared ones here, the stored ones of
        # each request's row by its auth), so no echo reaches outputs or run history.
        masking = MaskingTransport(
            _declared_secrets(spec),
            list(spec.service.secret_params),
            inner=self._pool.live(),  # the process's pooled connections
        )
        needs_body = strategy.auth_with(user_key, record).requires_request_body
        return SharedClient(
            auth=CurrentCredentials(
                strategy, spec.link_name, user_key, requires_request_body=needs_body
            ),
            base_url=shape.base_url,
            headers={"Accept": shape.accept} if shape.accept else {},
            transport=HttpsOnlyTransport(OnlyHosts(spec.link_name, hosts, masking)),
            timeout=httpx.Timeout(self.timeout),
            verify=True,
            follow_redirects=False,
        )

    def known_secrets(self, link_name: str, *, user: str | None = None) -> frozenset[str]:
        """Every secret of the connection deskwire holds (declared and stored), so that
        what is shown of a call that was never made (shadow mode) can be masked."""
        spec = self.spec(link_name)
        user_key = self._keeper.user_key(spec, user, required=False)
        record = self._store.load(spec.link_name, user_key)
        stored = record.secret_values if record is not None else frozenset()
        return _declared_secrets(spec) | stored

    # ---- status --------------------------------------------------------------------------

    def status(self, link_name: str, *, user: str | None = None) -> ConnectionStatus:
        """Connected / not connected / not configured / revoked / needs reconnect, and why."""
        return connection_status(self._keeper, self.spec(link_name), user)

    def list(self, *, user: str | None = None) -> list[ConnectionStatus]:
        """The status of every declared connection, by link name."""
        return [self.status(name, user=user) for name in sorted(self.config.connections)]

    def sdp_endpoint(self, link_name: str) -> SdpEndpoint:
        """The REST API v3 base and Accept header of an ``sdp`` / ``sdp_onprem`` connection
        (see :func:`connections.sdp_endpoint.sdp_endpoint`)."""
        return sdp_endpoint(self._keeper, self.spec(link_name))

    # ---- connecting ----------------------------------------------------------------------

    def authorize_url(self, link_name: str, user: str | None = None) -> str:
        """Start a connect: the provider URL to send the person to (OAuth 2.0 code flow with
        state and PKCE S256, or OAuth 1.0a after fetching a request token)."""
        return self.begin_connect(link_name, user=user).url

    @staticmethod
    def _is_oauth1_callback(query: Mapping[str, str]) -> bool:
        return "oauth_token" in query and "state" not in query

    @classmethod
    def callback_key(cls, query: Mapping[str, str]) -> str | None:
        """The attempt key a callback carries (see :class:`ConnectAttempt`), if any."""
        if cls._is_oauth1_callback(query):
            return query["oauth_token"] or None
        return query.get("state") or None

    def begin_connect(self, link_name: str, user: str | None = None) -> ConnectAttempt:
        """Start a connect like :meth:`authorize_url`, and also return the attempt's key."""
        spec = self.spec(link_name)
        self._keeper.require_configured(spec)
        user_key = self._keeper.user_key(spec, user)
        return self._strategy(spec).begin_connect(user_key)

    def complete_callback(self, query: Mapping[str, str]) -> str:
        """Finish a connect from the provider's redirect to ``/connections/callback``.

        Validates the single-use state (mismatch, expiry and replay are refused), honours
        Zoho's ``location`` / ``accounts-server``, exchanges the code (or the OAuth 1.0a
        verifier) and stores the tokens. Returns the link name.
        """
        if self._is_oauth1_callback(query):
            pending = self._store.take_state(OAUTH1_STATE_PREFIX + query["oauth_token"])
        else:
            state = self.callback_key(query)
            if not state:
                raise OAuthCallbackError("the callback has no state; start the connect again")
            pending = self._store.take_state(state)
        spec = self.spec(pending.link_name)
        self._strategy(spec).complete_connect(pending, query)
        return spec.link_name

    def connect_static(
        self, link_name: str, values: Mapping[str, str], *, user: str | None = None
    ) -> ConnectionStatus:
        """Store API key parameters (by parameter name) or Basic ``username``/``password``."""
        spec = self.spec(link_name)
        self._strategy(spec).connect_with(values, user)
        return self.status(link_name, user=user)

    def refresh(self, link_name: str, *, user: str | None = None) -> ConnectionStatus:
        """Fetch a new access token now (OAuth 2.0): checks the grant, connects client
        credentials. Raises the same errors as a use would."""
        spec = self.spec(link_name)
        self._keeper.require_configured(spec)
        strategy = self._strategy(spec)
        strategy.refresh(self._keeper.user_key(spec, user))
        return self.status(link_name, user=user)

    def bootstrap_refresh_token(
        self, link_name: str, refresh_token: str | None = None, *, user: str | None = None
    ) -> ConnectionStatus:
        """Connect an OAuth 2.0 connection from a refresh token (e.g. a Zoho Self Client's).

        Without ``refresh_token`` the one from the file (``refresh_token: ${ENV}``) is used.
        The token is tried at once, so a bad one fails here rather than in a rule.
        """
        spec = self.spec(link_name)
        self._keeper.require_configured(spec)
        token = SecretStr(refresh_token) if refresh_token else None
        self._strategy(spec).bootstrap(token, self._keeper.user_key(spec, user))
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
        user_key = self._keeper.user_key(spec, user, required=False)
        everyone = spec.per_user and not user_key
        records = (
            self._store.users(link_name)
            if everyone
            else [r for r in [self._store.load(link_name, user_key)] if r is not None]
        )
        confirmed, notes = self._strategy(spec).revoke_at_provider(records)
        self._store.mark(
            link_name, None if everyone else user_key, TokenStatus.REVOKED, "revoked by an admin"
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
