"""Refreshing stored credentials: one refresher at a time, and compare-and-set on refusal.

Whatever asks the token endpoint (an OAuth 2.0 refresh, a client credentials request, a
bootstrap from a refresh token) does it through :func:`refresh_or_skip` or
:func:`bootstrap`, under the Redis lock of the (connection, user). The request itself is
the auth strategy's ``grant`` callable; a refused grant is turned into the error to raise
by :func:`refused`, which marks the row *needs reconnect* only if nobody stored newer
credentials since it was read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from redis.exceptions import LockError, LockNotOwnedError, RedisError

from connections.errors import NeedsReconnectError, TransientTokenError
from connections.oauth import TokenReply
from connections.specs import ConnectionSpec
from connections.store import StoredToken, TokenStatus, digest, utcnow
from deskwire.metrics_store import MetricsStore

if TYPE_CHECKING:
    from connections.credentials import CredentialKeeper

__all__ = [
    "Grant",
    "Superseded",
    "bootstrap",
    "lock_name",
    "refresh_or_skip",
    "refused",
    "store_reply",
]

log = logging.getLogger(__name__)

# Asks the token endpoint for new credentials from a stored row, before a deadline
# (``time.monotonic``); raises what :func:`refused` returns when the grant is refused.
Grant = Callable[[StoredToken, float], TokenReply]


class Superseded(Exception):
    """The grant was refused, but another process stored newer credentials meanwhile."""

    def __init__(self, access_token: str) -> None:
        super().__init__("superseded")
        self.access_token = access_token


def _refreshed_age(record: StoredToken) -> float | None:
    """Seconds since deskwire's refresh that produced the stored access token, if known."""
    refreshed_at = record.meta.get("refreshed_at")
    if not isinstance(refreshed_at, int | float):
        return None
    return max(0.0, time.time() - float(refreshed_at))


def lock_name(spec: ConnectionSpec, user_key: str) -> str:
    """The Redis key of the refresh lock of one (connection, user)."""
    return f"deskwire:connections:refresh:{spec.link_name}:{digest(user_key)[:16]}"


@contextmanager
def refresh_lock(keeper: CredentialKeeper, spec: ConnectionSpec, user_key: str) -> Iterator[float]:
    """One refresh at a time per (connection, user), across every process.

    Yields the deadline (``time.monotonic``) of the token calls made under the lock:
    10 s before the lock expires, so the reply is stored while the lock is still held.
    """
    lock = keeper.redis.lock(
        lock_name(spec, user_key),
        timeout=keeper.lock_timeout,
        blocking_timeout=keeper.timeout + 10,
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
        yield keeper.deadline()
    finally:
        # Expired meanwhile: the next refresher takes over.
        with suppress(LockNotOwnedError, LockError, RedisError):
            lock.release()


def refresh_or_skip(
    keeper: CredentialKeeper,
    spec: ConnectionSpec,
    user_key: str,
    grant: Grant,
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
    with refresh_lock(keeper, spec, user_key) as deadline:
        record = keeper.usable(spec, user_key)  # re-read: another process may have refreshed
        current = record.access_token.get_secret_value() if record.access_token else None
        fresh = current is not None and not record.expiring(keeper.refresh_margin)
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
            reply = grant(record, deadline)
        except Superseded as newer:
            return newer.access_token
        store_reply(keeper, spec, user_key, record, reply, refreshed=True)
        return reply.access_token.get_secret_value()


def refused(
    keeper: CredentialKeeper,
    spec: ConnectionSpec,
    user_key: str,
    record: StoredToken,
    reason: str,
) -> Exception:
    """Mark the row *needs reconnect* unless it changed since ``record`` was read, and
    return the error to raise: :class:`NeedsReconnectError`, or :class:`Superseded`
    with the newer credentials (``usable`` raises for a row revoked meanwhile)."""
    marked = record.version == 0 or keeper.store.mark(
        spec.link_name,
        user_key,
        TokenStatus.NEEDS_RECONNECT,
        reason,
        expected_version=record.version,
    )
    if not marked:
        latest = keeper.store.load(spec.link_name, user_key)
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
            return Superseded(latest.access_token.get_secret_value())
        if latest is not None and latest.status == TokenStatus.CONNECTED:
            return TransientTokenError(
                f"connection '{spec.link_name}' changed while it was being refreshed; will retry"
            )
        keeper.usable(spec, user_key)  # raises the error of the row's new state
    return NeedsReconnectError(spec.link_name, reason)


def store_reply(
    keeper: CredentialKeeper,
    spec: ConnectionSpec,
    user_key: str,
    record: StoredToken,
    reply: TokenReply,
    *,
    meta: Mapping[str, Any] | None = None,
    bootstrap_digest: str | None = None,
    refreshed: bool = False,
) -> None:
    """Store a token reply over ``record`` (its refresh token kept when none comes back)."""
    if refreshed:  # for /metrics, across every process (never fails the refresh)
        MetricsStore(keeper.redis).count("token_refreshes", {"connection": spec.link_name})
    refresh = reply.refresh_token or record.refresh_token  # Zoho never rotates it
    # When deskwire last refreshed (epoch seconds); a token from a code exchange has none.
    # The lifetime as issued sets the refresh margin (StoredToken.refresh_margin); a
    # token without expires_in drops the previous token's.
    when = {
        "refreshed_at": time.time() if refreshed else None,
        "lifetime": reply.expires_in or None,
    }
    keeper.save(
        spec,
        user_key,
        {
            "access_token": reply.access_token.get_secret_value(),
            "refresh_token": refresh.get_secret_value() if refresh else None,
        },
        expires_at=(utcnow() + timedelta(seconds=reply.expires_in) if reply.expires_in else None),
        meta={
            key: value
            for key, value in {**record.meta, **reply.meta, **(meta or {}), **when}.items()
            if value is not None
        },
        bootstrap_digest=bootstrap_digest,
    )


def bootstrap(
    keeper: CredentialKeeper,
    spec: ConnectionSpec,
    user_key: str,
    token: SecretStr,
    grant: Grant,
) -> None:
    """Store a refresh token as the connection's grant and redeem it at once."""
    marker = digest(token.get_secret_value())
    with refresh_lock(keeper, spec, user_key) as deadline:
        existing = keeper.store.load(spec.link_name, user_key)
        if (
            existing is not None
            and existing.bootstrap_digest == marker
            and (existing.status == TokenStatus.CONNECTED)
        ):
            return  # another process bootstrapped this very token meanwhile
        keeper.save(
            spec,
            user_key,
            {"refresh_token": token.get_secret_value()},
            bootstrap_digest=marker,
            new_connection=True,
        )
        record = keeper.store.load(spec.link_name, user_key)
        assert record is not None  # saved just above, under the lock
        try:
            reply = grant(record, deadline)
        except Superseded:
            return  # another process connected it meanwhile
        store_reply(keeper, spec, user_key, record, reply, bootstrap_digest=marker, refreshed=True)
