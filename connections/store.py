"""The token store: credentials of every connection, encrypted at rest.

Secrets (access and refresh tokens, OAuth 1.0a token secrets, API keys, passwords, PKCE
verifiers) are kept as one Fernet token per row, encrypted by a
:class:`~connections.key_ring.KeyRing` built from the configured keys (newest first), so an
old key keeps decrypting while :func:`rotate_keys` re-encrypts everything with the newest.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, TypeVar, cast

from cryptography.fernet import InvalidToken
from pydantic import SecretStr
from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    Integer,
    Row,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from connections.errors import OAuthCallbackError, SecretKeyError
from connections.key_ring import KeyRing
from deskwire.database import Base, transaction

__all__ = [
    "AuthState",
    "ConnectionAuthState",
    "ConnectionToken",
    "KeyRing",
    "StoredToken",
    "TokenStatus",
    "TokenStore",
    "rotate_keys",
]


def utcnow() -> datetime:
    """Timezone-aware now."""
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)  # SQLite hands back naive datetimes


class TokenStatus(enum.StrEnum):
    """The stored state of one (connection, user) credential row."""

    CONNECTED = "connected"
    REVOKED = "revoked"
    NEEDS_RECONNECT = "needs_reconnect"


class ConnectionToken(Base):
    """Credentials of one connection, or of one user of a per-user connection."""

    __tablename__ = "connection_tokens"
    __table_args__ = (UniqueConstraint("link_name", "user_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    link_name: Mapped[str] = mapped_column(String(50), index=True)
    user_key: Mapped[str] = mapped_column(String(320), default="")  # "" = the shared row
    status: Mapped[str] = mapped_column(String(20), default=TokenStatus.CONNECTED)
    service: Mapped[str] = mapped_column(String(50))
    auth: Mapped[str] = mapped_column(String(20))
    grant_type: Mapped[str | None] = mapped_column(String(30))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str | None] = mapped_column(Text)  # Fernet token of a JSON object
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # nothing secret
    bootstrap_digest: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=0)
    connected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConnectionAuthState(Base):
    """A pending connect attempt: single use, expiring. Only a digest of the state is kept."""

    __tablename__ = "connection_auth_states"

    state_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    link_name: Mapped[str] = mapped_column(String(50), index=True)
    user_key: Mapped[str] = mapped_column(String(320), default="")
    secret: Mapped[str] = mapped_column(Text)  # Fernet token: PKCE verifier or OAuth1 secret
    redirect_uri: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def _secret(value: Any) -> SecretStr | None:
    return SecretStr(str(value)) if value not in (None, "") else None


# The share of an access token's lifetime that is kept as refresh margin (at most the
# configured margin): 10 % of a 5-minute token is 30 s, of a 30 s token 3 s.
LIFETIME_SHARE = 0.1


@dataclass(frozen=True)
class StoredToken:
    """A decrypted credential row; secret values stay wrapped in :class:`SecretStr`."""

    link_name: str
    user_key: str
    status: TokenStatus
    service: str
    auth: str
    grant_type: str | None
    scopes: tuple[str, ...]
    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    token_secret: SecretStr | None = None
    values: Mapping[str, SecretStr] = field(default_factory=dict)
    expires_at: datetime | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    bootstrap_digest: str | None = None
    error: str | None = None
    version: int = 0
    connected_at: datetime | None = None

    @cached_property
    def secret_values(self) -> frozenset[str]:
        """Every secret value of the row (tokens, token secret, key values), for masking.

        Computed once per record; the store hands out the same record while its row is
        unchanged, so this is derived once per row version.
        """
        wrapped = [self.access_token, self.refresh_token, self.token_secret, *self.values.values()]
        return frozenset(secret.get_secret_value() for secret in wrapped if secret is not None)

    @property
    def lifetime(self) -> float | None:
        """The access token's lifetime as issued (``expires_in``, seconds), when known."""
        value = self.meta.get("lifetime")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return None

    def refresh_margin(self, limit: float) -> float:
        """How long before its expiry the access token is refreshed: ``limit`` seconds, but
        never more than :data:`LIFETIME_SHARE` of the lifetime it was issued with.

        A margin as long as the token's whole life would make every use refresh it (a
        provider's 2-minute tokens against a 5-minute margin); a tenth of the lifetime
        leaves nine tenths of it in use, so at most one refresh per lifetime.
        """
        lifetime = self.lifetime
        return limit if lifetime is None else min(limit, lifetime * LIFETIME_SHARE)

    def expiring(self, margin: float, now: datetime | None = None) -> bool:
        """Whether the access token is missing or expires within its refresh margin
        (``margin`` at most, see :meth:`refresh_margin`). A token issued without
        ``expires_in`` never expires here: it is used until the API answers 401."""
        if self.access_token is None:
            return True
        if self.expires_at is None:
            return False
        ahead = timedelta(seconds=self.refresh_margin(margin))
        return self.expires_at - ahead <= (now or utcnow())


@dataclass(frozen=True)
class AuthState:
    """A consumed connect attempt."""

    link_name: str
    user_key: str
    redirect_uri: str
    secret: Mapping[str, str]


def digest(value: str) -> str:
    """SHA-256 hex digest, to index single-use states and recognise a bootstrap token."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


_TOKENS = ConnectionToken.__table__.c
# The read of every step: a Core statement built once (no ORM unit of work, no identity map).
_LOAD_ROW = select(*_TOKENS).where(
    _TOKENS.link_name == bindparam("link_name"), _TOKENS.user_key == bindparam("user_key")
)


_Write = TypeVar("_Write", bound=Callable[..., Any])


def _counted_write(method: _Write) -> _Write:
    """Counts the write in :attr:`TokenStore.writes` when it has ended (committed or not)."""

    @functools.wraps(method)
    def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        finally:
            TokenStore.writes += 1

    return cast(_Write, counted)


class TokenStore:
    """Reads and writes credential rows and connect states through a session maker.

    :meth:`load` is the hot path (every authenticated request reads the current row): one
    prebuilt Core select, and the decoded record is reused while the row is unchanged
    (compared column by column, so any write — a refresh, a reconnect, a revoke — is seen
    at the next load).
    """

    # Credential writes made by this process (any store), counted once each has ended: a
    # row read before one is not reused for a request (connections/current_credentials.py).
    writes = 0

    def __init__(self, sessions: sessionmaker[Session], keys: KeyRing) -> None:
        self._sessions = sessions
        self._keys = keys
        bind = sessions.kw.get("bind")
        self._engine = bind if isinstance(bind, Engine) else None
        # (link name, user key) -> the row last read and its decoded record
        self._decoded: dict[tuple[str, str], tuple[tuple[Any, ...], StoredToken, str | None]] = {}

    def load(self, link_name: str, user_key: str = "") -> StoredToken | None:
        """The credentials of a connection (or of one user of it), decrypted."""
        params = {"link_name": link_name, "user_key": user_key}
        if self._engine is not None:
            with self._engine.connect() as connection:
                row = connection.execute(_LOAD_ROW, params).one_or_none()
        else:
            with self._sessions() as session:
                row = session.execute(_LOAD_ROW, params).one_or_none()
        if row is None:
            return None
        key, values = (link_name, user_key), tuple(row)
        seen = self._decoded.get(key)
        if seen is not None and seen[0] == values:
            return seen[1]
        if seen is not None and seen[2] != row.secret:
            self._keys.forget(seen[2])  # a refresh or reconnect replaced the secrets
        record = self._decode(row)
        if len(self._decoded) >= KeyRing.CACHE_SIZE:
            self._decoded.clear()
        self._decoded[key] = (values, record, row.secret)
        return record

    def users(self, link_name: str) -> list[StoredToken]:
        """Every row of a connection (the shared one and each user's)."""
        with self._sessions() as session:
            rows = session.scalars(
                select(ConnectionToken)
                .where(ConnectionToken.link_name == link_name)
                .order_by(ConnectionToken.user_key)
            ).all()
            return [self._decode(row) for row in rows]

    def _decode(self, row: ConnectionToken | Row[Any]) -> StoredToken:
        data: Mapping[str, Any] = {}
        if row.secret:
            who = f"connection '{row.link_name}'" + (
                f" (user {row.user_key})" if row.user_key else ""
            )
            data = self._keys.decrypt_cached(row.secret, what=who)
        raw_values = data.get("values") or {}
        return StoredToken(
            link_name=row.link_name,
            user_key=row.user_key,
            status=TokenStatus(row.status),
            service=row.service,
            auth=row.auth,
            grant_type=row.grant_type,
            scopes=tuple(row.scopes or ()),
            access_token=_secret(data.get("access_token")),
            refresh_token=_secret(data.get("refresh_token")),
            token_secret=_secret(data.get("token_secret")),
            values={str(k): SecretStr(str(v)) for k, v in raw_values.items()},
            expires_at=_aware(row.expires_at),
            meta=dict(row.meta or {}),
            bootstrap_digest=row.bootstrap_digest,
            error=row.error,
            version=row.version,
            connected_at=_aware(row.connected_at),
        )

    @_counted_write
    def save(
        self,
        link_name: str,
        user_key: str,
        *,
        service: str,
        auth: str,
        grant_type: str | None,
        scopes: Sequence[str],
        secrets: Mapping[str, Any],
        expires_at: datetime | None,
        meta: Mapping[str, Any],
        bootstrap_digest: str | None = None,
        keep_bootstrap: bool = True,
        new_connection: bool = False,
    ) -> None:
        """Write credentials (status connected), creating the row if needed."""
        encrypted = self._keys.encrypt({k: v for k, v in secrets.items() if v is not None})
        for attempt in range(2):
            try:
                with transaction(self._sessions) as session:
                    row = self._row_for_update(session, link_name, user_key)
                    if row is None:
                        row = ConnectionToken(link_name=link_name, user_key=user_key, version=0)
                        session.add(row)
                        new_connection = True
                    row.status = TokenStatus.CONNECTED
                    row.service, row.auth, row.grant_type = service, auth, grant_type
                    row.scopes = list(scopes)
                    row.secret = encrypted
                    row.expires_at = expires_at
                    row.meta = dict(meta)
                    if bootstrap_digest is not None or not keep_bootstrap:
                        row.bootstrap_digest = bootstrap_digest
                    row.error = None
                    row.version = (row.version or 0) + 1
                    now = utcnow()
                    row.updated_at = now
                    if new_connection or row.connected_at is None:
                        row.connected_at = now
                return
            except IntegrityError:  # another process created the row meanwhile
                if attempt:
                    raise

    @_counted_write
    def mark(
        self,
        link_name: str,
        user_key: str | None,
        status: TokenStatus,
        error: str,
        *,
        expected_version: int | None = None,
    ) -> bool:
        """Set a row's status (``user_key=None``: every row of the connection); drop secrets
        unless the status keeps them usable.

        With ``expected_version`` (one row only) this is a compare-and-set: the row is left
        alone, and False returned, when its version moved on since it was read (another
        process stored newer credentials meanwhile).
        """
        with transaction(self._sessions) as session:
            query = select(ConnectionToken).where(ConnectionToken.link_name == link_name)
            if user_key is not None:
                query = query.where(ConnectionToken.user_key == user_key)
            rows = session.scalars(query.with_for_update()).all()
            if expected_version is not None and any(
                (row.version or 0) != expected_version for row in rows
            ):
                return False
            for row in rows:
                row.status = status
                row.error = error
                row.version = (row.version or 0) + 1
                row.updated_at = utcnow()
                if status != TokenStatus.CONNECTED:
                    row.secret = None
                    row.expires_at = None
            return True

    @_counted_write
    def delete(self, link_name: str) -> None:
        """Forget every row and pending state of a connection."""
        with transaction(self._sessions) as session:
            session.execute(delete(ConnectionToken).where(ConnectionToken.link_name == link_name))
            session.execute(
                delete(ConnectionAuthState).where(ConnectionAuthState.link_name == link_name)
            )

    @staticmethod
    def _row_for_update(session: Session, link_name: str, user_key: str) -> ConnectionToken | None:
        return session.scalars(
            select(ConnectionToken)
            .where(ConnectionToken.link_name == link_name, ConnectionToken.user_key == user_key)
            .with_for_update()
        ).one_or_none()

    # ---- connect states -----------------------------------------------------------------

    def put_state(
        self,
        state: str,
        *,
        link_name: str,
        user_key: str,
        redirect_uri: str,
        secret: Mapping[str, str],
        ttl: float,
    ) -> None:
        """Remember a connect attempt until it is used once or expires."""
        now = utcnow()
        with transaction(self._sessions) as session:
            session.execute(
                delete(ConnectionAuthState).where(
                    ConnectionAuthState.expires_at < now - timedelta(days=1)
                )
            )
            session.add(
                ConnectionAuthState(
                    state_digest=digest(state),
                    link_name=link_name,
                    user_key=user_key,
                    secret=self._keys.encrypt(secret),
                    redirect_uri=redirect_uri,
                    created_at=now,
                    expires_at=now + timedelta(seconds=ttl),
                )
            )

    def take_state(self, state: str) -> AuthState:
        """Consume a connect attempt; unknown, expired or already used states are refused."""
        now = utcnow()
        with transaction(self._sessions) as session:
            row = session.scalars(
                select(ConnectionAuthState)
                .where(ConnectionAuthState.state_digest == digest(state))
                .with_for_update()
            ).one_or_none()
            if row is None:
                raise OAuthCallbackError(
                    "the callback's state matches no connect attempt (mismatch or forged "
                    "callback); start the connect again"
                )
            if row.used_at is not None:
                raise OAuthCallbackError(
                    f"this callback for connection '{row.link_name}' was already used "
                    "(replayed); start the connect again"
                )
            row.used_at = now
            expires_at = _aware(row.expires_at)
            assert expires_at is not None
            if expires_at <= now:
                raise _ExpiredState(row.link_name)
            return AuthState(
                link_name=row.link_name,
                user_key=row.user_key,
                redirect_uri=row.redirect_uri,
                secret={
                    str(k): str(v)
                    for k, v in self._keys.decrypt(row.secret, what="a connect attempt").items()
                },
            )


class _ExpiredState(OAuthCallbackError):
    def __init__(self, link_name: str) -> None:
        super().__init__(
            f"the connect attempt for connection '{link_name}' expired; start the connect again"
        )


def rotate_keys(sessions: sessionmaker[Session], keys: Sequence[str]) -> int:
    """Re-encrypt every stored secret with the first (newest) key; return the rows changed."""
    ring = KeyRing(keys)
    count = 0
    with transaction(sessions) as session:
        for token in session.scalars(select(ConnectionToken).with_for_update()).all():
            if token.secret:
                token.secret = _rotate(ring, token.secret, f"connection '{token.link_name}'")
                count += 1
        for state in session.scalars(select(ConnectionAuthState).with_for_update()).all():
            state.secret = _rotate(ring, state.secret, "a connect attempt")
            count += 1
    return count


def _rotate(ring: KeyRing, token: str, what: str) -> str:
    try:
        return ring.rotate(token)
    except InvalidToken:
        raise SecretKeyError(
            f"the stored credentials of {what} cannot be decrypted with any configured key"
        ) from None
