"""Stored credentials, as every auth type sees them: :class:`CredentialKeeper`.

It holds the token store, the Redis connection (refresh lock, metrics), the client for
token endpoints and the time limits, and answers the questions common to every auth type:
whose row a call uses, whether the stored row still fits the declaration (drift), and
whether it may be used now, or which error says why not. The auth strategies
(:mod:`connections.auth_types`) do the rest.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
import redis

from connections.auth_types import strategy_for
from connections.errors import (
    ConnectionRevokedError,
    NeedsReconnectError,
    NotConfiguredError,
    NotConnectedError,
)
from connections.specs import ConnectionSpec, ConnectKind
from connections.store import StoredToken, TokenStatus, TokenStore
from connections.transport import HttpsOnlyTransport

__all__ = ["CredentialKeeper"]


class CredentialKeeper:
    """The token store and the rules of stored credentials shared by every auth type.

    See :class:`connections.facade.Connections` for ``timeout``, ``refresh_margin`` and
    ``refresh_on_401_after``; ``redirect_uri`` is the one OAuth redirect URI.
    """

    STATE_TTL = 600.0  # how long a started browser connect may take

    def __init__(
        self,
        store: TokenStore,
        redis: redis.Redis,
        *,
        timeout: float,
        refresh_margin: float,
        refresh_on_401_after: float,
        redirect_uri: str,
    ) -> None:
        self.store = store
        self.redis = redis
        self.timeout = float(timeout)
        self.refresh_margin = float(refresh_margin)
        self.refresh_on_401_after = float(refresh_on_401_after)
        self.redirect_uri = redirect_uri
        self._http: httpx.Client | None = None
        self._http_pid = 0
        self._http_lock = threading.Lock()

    # ---- time limits and the token-endpoint client -----------------------------------------

    @property
    def lock_timeout(self) -> float:
        """How long the refresh lock is held at most (it expires in Redis after this)."""
        return self.timeout * 2 + 10

    def deadline(self) -> float:
        """When a token-endpoint call started now must be given up (``time.monotonic``)."""
        return time.monotonic() + self.timeout * 2

    def token_http(self) -> httpx.Client:
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
        """Close the token-endpoint client."""
        if self._http is not None:
            self._http.close()
            self._http = None

    # ---- whose credentials ---------------------------------------------------------------

    @staticmethod
    def user_key(spec: ConnectionSpec, user: str | None, *, required: bool = True) -> str:
        """The row a call uses: ``""`` (shared), or the user's of a per-user connection."""
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
    def require_configured(spec: ConnectionSpec) -> None:
        """:class:`NotConfiguredError` when a variable the connection references is unset."""
        if spec.problem:
            raise NotConfiguredError(
                f"connection '{spec.link_name}' is not configured: {spec.problem} in "
                "deskwire's environment"
            )

    @staticmethod
    def connect_hint(spec: ConnectionSpec) -> str:
        """What a person does to connect it."""
        return f"open /connections/{spec.link_name}/connect"

    # ---- stored rows ---------------------------------------------------------------------

    @staticmethod
    def drift(spec: ConnectionSpec, record: StoredToken) -> str | None:
        """Why stored credentials no longer fit the declared connection, if they do not."""
        if record.service != spec.service.key:
            return f"its service changed from {record.service} to {spec.service.key}"
        if record.auth != spec.auth:
            return f"its auth type changed from {record.auth} to {spec.auth}"
        if record.grant_type != spec.token_grant:
            return f"its grant type changed from {record.grant_type} to {spec.token_grant}"
        added = [s for s in spec.token_scopes if s not in record.scopes]
        removed = [s for s in record.scopes if s not in spec.token_scopes]
        if added or removed:
            parts = []
            if added:
                parts.append("added " + ", ".join(added))
            if removed:
                parts.append("removed " + ", ".join(removed))
            return f"its scopes changed ({'; '.join(parts)})"
        return None

    def current(self, spec: ConnectionSpec, user_key: str) -> StoredToken | None:
        """The stored row, revoked first if the declaration drifted, bootstrapped if due."""
        record = self.store.load(spec.link_name, user_key)
        if record is not None and record.status == TokenStatus.CONNECTED:
            drift = self.drift(spec, record)
            if drift:
                self.store.mark(spec.link_name, user_key, TokenStatus.REVOKED, drift)
                record = self.store.load(spec.link_name, user_key)
        if strategy_for(self, spec).bootstrap_if_due(user_key, record):
            record = self.store.load(spec.link_name, user_key)
        return record

    def save(
        self,
        spec: ConnectionSpec,
        user_key: str,
        secrets: Mapping[str, Any],
        *,
        expires_at: datetime | None = None,
        meta: Mapping[str, Any] | None = None,
        bootstrap_digest: str | None = None,
        new_connection: bool = False,
    ) -> None:
        """Store credentials as granted for the connection as declared now (its service,
        auth type, grant and scopes: what :meth:`drift` compares against later)."""
        self.store.save(
            spec.link_name,
            user_key,
            service=spec.service.key,
            auth=spec.auth,
            grant_type=spec.token_grant,
            scopes=spec.token_scopes,
            secrets=secrets,
            expires_at=expires_at,
            meta=meta or {},
            bootstrap_digest=bootstrap_digest,
            new_connection=new_connection,
        )

    def empty_record(self, spec: ConnectionSpec, user_key: str) -> StoredToken:
        """A connected row holding no secrets yet, as the declaration has it."""
        return StoredToken(
            link_name=spec.link_name,
            user_key=user_key,
            status=TokenStatus.CONNECTED,
            service=spec.service.key,
            auth=spec.auth,
            grant_type=spec.token_grant,
            scopes=spec.token_scopes,
        )

    def usable(self, spec: ConnectionSpec, user_key: str) -> StoredToken:
        """Stored credentials that may be used, or the error that says why not."""
        record = self.current(spec, user_key)
        who = f" for user {user_key}" if user_key else ""
        if record is None:
            if spec.connect_kind is ConnectKind.CLIENT_CREDENTIALS:
                return self.empty_record(spec, user_key)  # a token is fetched on first use
            if user_key:
                raise NotConnectedError(
                    f"user {user_key} has not connected connection '{spec.link_name}' yet; "
                    f"they should {self.connect_hint(spec)} (signed in as themselves)"
                )
            raise NotConnectedError(
                f"connection '{spec.link_name}' is not connected; {self.connect_hint(spec)}"
            )
        if record.status == TokenStatus.NEEDS_RECONNECT:
            raise NeedsReconnectError(spec.link_name, record.error or "the grant was refused")
        if record.status == TokenStatus.REVOKED:
            raise ConnectionRevokedError(
                f"connection '{spec.link_name}'{who} was revoked ({record.error or 'by an admin'});"
                f" {self.connect_hint(spec)} to connect it again"
            )
        return record
