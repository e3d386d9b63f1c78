"""The status of a connection as a person sees it: :func:`connection_status`."""

from __future__ import annotations

from typing import Any

from connections.credentials import CredentialKeeper
from connections.errors import NeedsReconnectError, TransientTokenError
from connections.results import ConnectionState, ConnectionStatus
from connections.specs import ConnectionSpec, ConnectKind
from connections.store import TokenStatus

__all__ = ["connection_status"]


def _status(
    spec: ConnectionSpec, state: ConnectionState, message: str, **extra: Any
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
        grant_type=spec.token_grant,
        scopes=spec.token_scopes,
        **extra,
    )


def connection_status(
    keeper: CredentialKeeper, spec: ConnectionSpec, user: str | None
) -> ConnectionStatus:
    """Connected / not connected / not configured / revoked / needs reconnect, and why."""
    if spec.problem:
        return _status(spec, ConnectionState.NOT_CONFIGURED, f"not configured: {spec.problem}")
    if spec.static_credentials:
        return _status(
            spec, ConnectionState.CONNECTED, "connected: credentials from the connections file"
        )
    if spec.per_user and not (user and user.strip()):
        rows = [r for r in keeper.store.users(spec.link_name) if r.user_key]
        count = sum(
            1 for r in rows if r.status == TokenStatus.CONNECTED and not keeper.drift(spec, r)
        )
        if count:
            message = f"connected for {count} user{'s' if count != 1 else ''}"
            return _status(spec, ConnectionState.CONNECTED, message, users_connected=count)
        return _status(
            spec,
            ConnectionState.NOT_CONNECTED,
            "each user connects with their own account; nobody has connected yet",
        )
    user_key = keeper.user_key(spec, user)
    extra: dict[str, Any] = {"user": user_key or None}
    try:
        record = keeper.current(spec, user_key)
    except NeedsReconnectError as exc:
        return _status(
            spec,
            ConnectionState.NEEDS_RECONNECT,
            f"needs to be reconnected: {exc.reason}",
            **extra,
        )
    except TransientTokenError as exc:
        return _status(spec, ConnectionState.NOT_CONNECTED, f"not connected yet: {exc}", **extra)
    if record is None:
        if spec.connect_kind is ConnectKind.CLIENT_CREDENTIALS:
            message = "client credentials: a token is fetched on first use"
        elif user_key:
            message = f"not connected for user {user_key}: {keeper.connect_hint(spec)}"
        else:
            message = f"not connected: {keeper.connect_hint(spec)}"
        return _status(spec, ConnectionState.NOT_CONNECTED, message, **extra)
    extra.update(expires_at=record.expires_at, connected_at=record.connected_at)
    if record.status == TokenStatus.NEEDS_RECONNECT:
        return _status(
            spec,
            ConnectionState.NEEDS_RECONNECT,
            f"needs to be reconnected: {record.error} — {keeper.connect_hint(spec)}",
            **extra,
        )
    if record.status == TokenStatus.REVOKED:
        return _status(
            spec,
            ConnectionState.REVOKED,
            f"revoked: {record.error or 'by an admin'} — {keeper.connect_hint(spec)}",
            **extra,
        )
    message = "connected"
    if record.expires_at is not None:
        message += f"; access token valid until {record.expires_at:%Y-%m-%d %H:%M:%S} UTC"
    return _status(spec, ConnectionState.CONNECTED, message, **extra)
