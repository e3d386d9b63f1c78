"""What the connections facade hands back: states, statuses, connect attempts, outcomes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "CALLBACK_PATH",
    "ConnectAttempt",
    "ConnectionState",
    "ConnectionStatus",
    "RevokeOutcome",
    "SdpEndpoint",
]

# Where every OAuth provider sends the browser back to (the one redirect URI).
CALLBACK_PATH = "/connections/callback"


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
