"""Errors of the connections package.

Every message names the connection and says what to do; none carries a secret, a token or a
full URL with its query string (query strings may hold credentials).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from configfiles import InvalidConfig


class ConnectionsError(Exception):
    """Base of every error raised by :mod:`connections`."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a connections file, located by file, line, column and field path."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.field}: {self.message}"


class ConnectionsConfigError(InvalidConfig[ConfigIssue], ConnectionsError):
    """The connections file is malformed; ``errors`` lists every problem found.

    The errors are kept sorted by file, line and column (ties keep the order found), so
    every place that shows them lists them in the order a reader meets them.
    """

    def __init__(self, errors: Sequence[ConfigIssue]) -> None:
        super().__init__(errors, "the connections file")


class UnknownConnectionError(ConnectionsError):
    """No connection with this link name is declared."""


class NotConfiguredError(ConnectionsError):
    """The connection references environment variables that are not set."""


class NotConnectedError(ConnectionsError):
    """The connection (or this user's copy of it) has no credentials yet."""


class ConnectionRevokedError(NotConnectedError):
    """The connection was revoked (by an admin or because its scopes or auth changed)."""


class NeedsReconnectError(ConnectionsError):
    """The provider refused the stored grant for good; a person must connect again."""

    def __init__(self, link_name: str, reason: str) -> None:
        self.link_name = link_name
        self.reason = reason
        super().__init__(
            f"connection '{link_name}' needs to be reconnected: {reason}"
            f" — open /connections/{link_name}/connect"
        )


class TransientTokenError(ConnectionsError):
    """The token endpoint (or the refresh lock) failed for now; retrying later may work."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class TokenRequestError(ConnectionsError):
    """The token endpoint answered with an error that is neither transient nor a revoked grant."""


class ClientAuthError(TokenRequestError):
    """The token endpoint refused deskwire's own client credentials (``invalid_client``,
    ``unauthorized_client`` …): a configuration error, so the stored grant is kept."""

    def __init__(self, link_name: str, message: str) -> None:
        self.link_name = link_name
        super().__init__(message)


class OAuthCallbackError(ConnectionsError):
    """An OAuth callback was refused: unknown, expired or replayed state, or a provider error."""


class InsecureURLError(ConnectionsError):
    """A request would carry credentials over plain HTTP to a host that is not loopback."""


class ConnectionInUseError(ConnectionsError):
    """The connection cannot be deleted while rules use it."""

    def __init__(self, link_name: str, rule_ids: Sequence[str]) -> None:
        self.link_name = link_name
        self.rule_ids = tuple(rule_ids)
        super().__init__(
            f"connection '{link_name}' is used by rule{'s' if len(rule_ids) != 1 else ''} "
            + ", ".join(self.rule_ids)
            + "; remove it from those rules first"
        )


class NotEditableError(ConnectionsError):
    """An edit changes a field the editing rules keep fixed; ``problems`` lists each one."""

    def __init__(self, subject: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(f"{subject} cannot be changed this way: " + "; ".join(self.problems))


class UnsupportedOperationError(ConnectionsError):
    """The operation does not apply to this connection's auth type."""


class SecretKeyError(ConnectionsError):
    """Stored credentials cannot be decrypted with any of the configured keys."""


class UsageUnknownError(ConnectionsError):
    """Which rules use a connection cannot be told (no valid rules are loaded)."""
