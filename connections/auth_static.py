"""API key and Basic: credentials a person types in, or the connections file gives.

Both keep their values as they are (nothing expires, nothing is refreshed, there is no
revoke endpoint); they differ only in the values they take and how a request carries
them: :class:`ApiKeyStrategy` in each parameter's placement, :class:`BasicStrategy` in
the ``Authorization: Basic`` header.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from connections.auth import ApiKeyAuth, BasicAuth
from connections.auth_strategy import StrategyBase
from connections.errors import ConnectionsError, UnsupportedOperationError
from connections.specs import ApiKeyConnection, BasicConnection
from connections.store import StoredToken

if TYPE_CHECKING:
    from connections.credentials import CredentialKeeper

__all__ = ["ApiKeyStrategy", "BasicStrategy"]


class _StaticStrategy(StrategyBase):
    """Values from the file (``values:``) or stored from a form, used as they are."""

    spec: ApiKeyConnection | BasicConnection

    def credentials(self, user_key: str) -> StoredToken | None:
        """The stored row, or ``None`` when the connections file gives the values."""
        if self.spec.static_credentials:
            return None
        return self.keeper.usable(self.spec, user_key)

    def _values(self, record: StoredToken | None) -> Mapping[str, SecretStr]:
        return self.spec.values if record is None else record.values

    def connect_with(self, values: Mapping[str, str], user: str | None) -> None:
        """Check the typed-in values against the fields the connection takes; store them."""
        spec = self.spec
        link = spec.link_name
        if spec.static_credentials:
            raise UnsupportedOperationError(
                f"connection '{link}' takes its credentials from the connections file "
                "(values:); change them there"
            )
        expected = [field.name for field in spec.credential_fields]
        missing = [name for name in expected if not str(values.get(name) or "").strip()]
        unknown = [name for name in values if name not in expected]
        problems = []
        if missing:
            problems.append("missing " + ", ".join(missing))
        if unknown:
            problems.append("unknown " + ", ".join(unknown) + f" (expected {', '.join(expected)})")
        if problems:
            raise ConnectionsError(f"connection '{link}': " + "; ".join(problems))
        self.keeper.save(
            spec,
            self.keeper.user_key(spec, user),
            {"values": {name: str(values[name]) for name in expected}},
            new_connection=True,
        )


class ApiKeyStrategy(_StaticStrategy):
    """Each key parameter in its placement: query string, header or form body."""

    def __init__(self, keeper: CredentialKeeper, spec: ApiKeyConnection) -> None:
        super().__init__(keeper, spec)
        self.spec: ApiKeyConnection = spec

    def auth_with(self, user_key: str, record: StoredToken | None) -> httpx.Auth:
        """The service's parameters, each with its value (sdp_onprem: in ``key_header``)."""
        values = self._values(record)
        params = [(param, values[param.name]) for param in self.spec.service.params]
        if self.spec.key_header:  # sdp_onprem on a build that reads another header
            renamed = self.spec.key_header
            params = [(dataclasses.replace(param, name=renamed), v) for param, v in params]
        return ApiKeyAuth(self.spec.link_name, params)


class BasicStrategy(_StaticStrategy):
    """A user name and password in the ``Authorization: Basic`` header."""

    def __init__(self, keeper: CredentialKeeper, spec: BasicConnection) -> None:
        super().__init__(keeper, spec)
        self.spec: BasicConnection = spec

    def auth_with(self, user_key: str, record: StoredToken | None) -> httpx.Auth:
        """Basic credentials of the file or of the store."""
        values = self._values(record)
        return BasicAuth(self.spec.link_name, values["username"], values["password"])
