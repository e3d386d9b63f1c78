"""What the connection pages show of each auth type, keyed by the spec's type.

Like :func:`connections.auth_types.strategy_for`, the pages ask the connection's type,
never its ``auth`` text: each type names the template of the facts only it has, what a user
types in to connect it, and which parts of the edit page apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from connections.specs import (
    ApiKeyConnection,
    BasicConnection,
    ConnectionSpec,
    OAuth1Connection,
    OAuth2Connection,
)

__all__ = ["AuthView", "auth_view"]


@dataclass(frozen=True)
class AuthView:
    """The pages' view of one auth type."""

    facts: str  # template with the detail page's facts of this type
    credentials: str  # what a user types in on the connect page ("" when they sign in)
    scopes: bool  # whether the edit page offers scopes
    redirect: bool  # whether the provider sends the browser back (a redirect URI)


_VIEWS: Mapping[type, AuthView] = MappingProxyType(
    {
        OAuth2Connection: AuthView("connections/auth/oauth2.html", "", True, True),
        OAuth1Connection: AuthView("connections/auth/oauth1.html", "", False, True),
        ApiKeyConnection: AuthView("connections/auth/api_key.html", "an API key", False, False),
        BasicConnection: AuthView(
            "connections/auth/basic.html", "a user name and password", False, False
        ),
    }
)


def auth_view(spec: ConnectionSpec) -> AuthView:
    """The view of ``spec``'s auth type."""
    return _VIEWS[type(spec)]
