"""What an auth type knows how to do: the :class:`AuthStrategy` protocol.

One strategy per auth type (:mod:`connections.auth_oauth2`, :mod:`connections.auth_oauth1`,
:mod:`connections.auth_static`), bound to a :class:`~connections.credentials.CredentialKeeper`
and one connection; :func:`connections.auth_types.strategy_for` picks it by the type of the
connection's spec. :class:`StrategyBase` answers every operation an auth type does not
have with the :class:`~connections.errors.UnsupportedOperationError` that says what to do
instead, so each strategy implements only what applies to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import httpx
from pydantic import SecretStr

from connections.errors import OAuthCallbackError, UnsupportedOperationError
from connections.results import ConnectAttempt
from connections.specs import ConnectionSpec
from connections.store import AuthState, StoredToken

if TYPE_CHECKING:
    from connections.credentials import CredentialKeeper

__all__ = ["AuthStrategy", "ProviderRevoke", "StrategyBase"]

# What a revoke at the provider came to: True confirmed, False not (with notes), None: the
# auth type or service has no revoke endpoint.
ProviderRevoke = tuple[bool | None, list[str]]


class AuthStrategy(Protocol):
    """Connect, refresh, apply credentials and revoke, for one connection."""

    def credentials(self, user_key: str) -> StoredToken | None:
        """The stored credentials a use applies now (``None``: the connections file's), or
        the error that says why they may not be used (not connected, revoked, …)."""

    def auth_with(self, user_key: str, record: StoredToken | None) -> httpx.Auth:
        """The ``httpx.Auth`` that puts ``record``'s credentials (from :meth:`credentials`)
        on a request; it reads nothing more from the store unless it must refresh."""

    def begin_connect(self, user_key: str) -> ConnectAttempt:
        """Start a browser connect: where to send the person."""

    def complete_connect(self, pending: AuthState, query: Mapping[str, str]) -> None:
        """Finish a browser connect from the provider's redirect; store the credentials."""

    def connect_with(self, values: Mapping[str, str], user: str | None) -> None:
        """Store credentials a person typed in (API key parameters, Basic user/password)."""

    def refresh(self, user_key: str) -> None:
        """Fetch a new access token now."""

    def bootstrap(self, token: SecretStr | None, user_key: str) -> None:
        """Connect from a refresh token (``None``: the one of the connections file)."""

    def bootstrap_if_due(self, user_key: str, record: StoredToken | None) -> bool:
        """Connect from the file's refresh token when it is new; whether it did."""

    def revoke_at_provider(self, records: Sequence[StoredToken]) -> ProviderRevoke:
        """Revoke the stored grants at the provider (best effort)."""


class StrategyBase:
    """The operations an auth type does not have, refused with what to do instead."""

    def __init__(self, keeper: CredentialKeeper, spec: ConnectionSpec) -> None:
        self.keeper = keeper
        self.spec = spec

    def credentials(self, user_key: str) -> StoredToken | None:
        """The stored row, if it may be used."""
        return self.keeper.usable(self.spec, user_key)

    def _uses(self) -> str:
        return f"connection '{self.spec.link_name}' uses {self.spec.auth}"

    def begin_connect(self, user_key: str) -> ConnectAttempt:
        """Refused: this auth type connects without a browser redirect."""
        grant = self.spec.token_grant
        raise UnsupportedOperationError(
            self._uses()
            + (f" ({grant})" if grant else "")
            + "; it is connected without a browser redirect"
        )

    def complete_connect(self, pending: AuthState, query: Mapping[str, str]) -> None:
        """Refused: no browser connect of this connection can be pending."""
        raise OAuthCallbackError(
            f"{self._uses()} now, which connects without a browser redirect; the callback "
            "was not used"
        )

    def connect_with(self, values: Mapping[str, str], user: str | None) -> None:
        """Refused: this auth type is connected through the provider."""
        link = self.spec.link_name
        raise UnsupportedOperationError(
            f"{self._uses()}; connect it through /connections/{link}/connect"
        )

    def refresh(self, user_key: str) -> None:
        """Refused: only OAuth 2.0 tokens are refreshed."""
        raise UnsupportedOperationError(f"{self._uses()}; only OAuth 2.0 tokens are refreshed")

    def bootstrap(self, token: SecretStr | None, user_key: str) -> None:
        """Refused: only the OAuth 2.0 authorization code grant has refresh tokens."""
        raise UnsupportedOperationError(
            f"connection '{self.spec.link_name}' does not use the authorization_code grant; "
            "a refresh token does not apply"
        )

    def bootstrap_if_due(self, user_key: str, record: StoredToken | None) -> bool:
        """Never due: only OAuth 2.0 connections take a refresh token from the file."""
        return False

    def revoke_at_provider(self, records: Sequence[StoredToken]) -> ProviderRevoke:
        """Nothing to revoke at the provider: the stored credentials are just forgotten."""
        return None, []
