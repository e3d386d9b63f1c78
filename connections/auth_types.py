"""Which strategy an auth type uses: :func:`strategy_for`, keyed by the spec's type.

Adding an auth type: a service and a connection type in :mod:`connections.specs` (and
their entries in ``spec_building.SERVICE_TYPES`` / connection table), a strategy module, and one
case here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_never

from connections.auth_oauth1 import OAuth1Strategy
from connections.auth_oauth2 import OAuth2Strategy
from connections.auth_static import ApiKeyStrategy, BasicStrategy
from connections.auth_strategy import AuthStrategy
from connections.specs import (
    ApiKeyConnection,
    BasicConnection,
    ConnectionSpec,
    OAuth1Connection,
    OAuth2Connection,
)

if TYPE_CHECKING:
    from connections.credentials import CredentialKeeper

__all__ = ["strategy_for"]


def strategy_for(keeper: CredentialKeeper, spec: ConnectionSpec) -> AuthStrategy:
    """The strategy of ``spec``'s auth type, bound to ``keeper`` and ``spec``."""
    match spec:
        case OAuth2Connection():
            return OAuth2Strategy(keeper, spec)
        case OAuth1Connection():
            return OAuth1Strategy(keeper, spec)
        case ApiKeyConnection():
            return ApiKeyStrategy(keeper, spec)
        case BasicConnection():
            return BasicStrategy(keeper, spec)
        case _:
            assert_never(spec)
