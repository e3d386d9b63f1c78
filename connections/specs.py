"""Services and connections as typed records: one spec type per auth type.

A service (built in, or declared under ``services:``) and a connection (under
``connections:``) each have a common base holding what every auth type has (names, base
URL, hosts, where it was declared) and one subclass per auth type holding only that type's
fields: :class:`OAuth2Service` / :class:`OAuth2Connection`, :class:`OAuth1Service` /
:class:`OAuth1Connection`, :class:`ApiKeyService` / :class:`ApiKeyConnection`,
:class:`BasicService` / :class:`BasicConnection`.

The reader (:mod:`connections.config`) collects a mapping of values and hands it to
:mod:`connections.spec_building`: the one place that picks a type from the ``auth:``
text. Everything downstream asks the type.

Each field says, in its metadata, how an edit of it is treated (:data:`EDIT_FIXED`,
:data:`EDIT_FREE`, :data:`EDIT_REVOKES`); :mod:`connections.editing` reads that, so the
list of fields exists once.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from pydantic import SecretStr

from connections.errors import NotConfiguredError

__all__ = [
    "EDIT_FIXED",
    "EDIT_FREE",
    "EDIT_REVOKES",
    "SCOPE_DELIMITERS",
    "ApiKeyConnection",
    "ApiKeyParam",
    "ApiKeyService",
    "BasicConnection",
    "BasicService",
    "ConnectKind",
    "ConnectionBase",
    "ConnectionSpec",
    "CredentialField",
    "DataCentre",
    "OAuth1Connection",
    "OAuth1Service",
    "OAuth2Connection",
    "OAuth2Service",
    "ServiceBase",
    "ServiceSpec",
    "edit_role",
    "present",
]

# How an edit of a field is treated (see connections.editing).
EDIT_FIXED = "fixed"  # never changes; each has its own refusal
EDIT_FREE = "free"  # changes without revoking anything
EDIT_REVOKES = "revokes"  # changes, and the stored credentials must be granted again
_FIXED = MappingProxyType({"edit": EDIT_FIXED})
_FREE = MappingProxyType({"edit": EDIT_FREE})
_REVOKES = MappingProxyType({"edit": EDIT_REVOKES})

# The usual query parameter of an access token; masked for every service, in case an API
# echoes one back.
DEFAULT_TOKEN_PARAM = "access_token"  # noqa: S105 - a parameter name, not a secret
SCOPE_DELIMITERS: Mapping[str, str] = MappingProxyType({"comma": ",", "space": " ", "plus": "+"})

_T = TypeVar("_T")


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


def edit_role(spec_field: dataclasses.Field[Any]) -> str | None:
    """How an edit of this field is treated; ``None``: it is not compared at all."""
    role = spec_field.metadata.get("edit")
    return str(role) if role is not None else None


def present(value: _T | None, link_name: str, what: str) -> _T:
    """``value``, or :class:`NotConfiguredError` naming the setting that is not there."""
    if value is None:
        raise NotConfiguredError(
            f"connection '{link_name}' is not configured: it has no {what}; set it in the "
            "connections file (or its variable in deskwire's environment)"
        )
    return value


@dataclass(frozen=True)
class ApiKeyParam:
    """One credential parameter of an ``api_key`` service."""

    name: str
    display_name: str
    placement: str  # query | header | form
    format: str = "{value}"

    def render(self, value: str) -> str:
        """The value as sent, e.g. ``Token token=<key>`` for PagerDuty."""
        return self.format.replace("{value}", value)


@dataclass(frozen=True)
class DataCentre:
    """A Zoho data centre: its accounts server and, for SDP, its API host."""

    key: str
    accounts_url: str
    base_url: str | None = None


@dataclass(frozen=True)
class CredentialField:
    """One value a person types in to connect an API key or Basic connection."""

    name: str
    label: str
    secret: bool = True


class ConnectKind(enum.StrEnum):
    """How a connection gets its credentials."""

    REDIRECT = "redirect"  # the person is sent to the provider and comes back (OAuth)
    CLIENT_CREDENTIALS = "client_credentials"  # deskwire fetches a token itself
    FORM = "form"  # the person types the values in (API key, Basic)


# --------------------------------------------------------------------------------------
# Services


@dataclass(frozen=True, kw_only=True)
class ServiceBase:
    """What every service has, whatever its auth type."""

    auth: ClassVar[str]

    key: str
    name: str = field(metadata=_FREE)
    builtin: bool
    base_url: str | None = field(default=None, metadata=_REVOKES)
    base_url_required: bool = False
    # More API hosts than the base URL's, e.g. an events API.
    hosts: tuple[str, ...] = field(default=(), metadata=_REVOKES)
    accept: str | None = None
    sdp: str | None = None  # cloud | onprem: this service is ServiceDesk Plus
    missing_env: tuple[str, ...] = ()
    unset_fields: tuple[str, ...] = ()
    file: str = ""
    line: int = 0

    @property
    def secret_params(self) -> tuple[str, ...]:
        """Request parameters that may carry a credential (masked in answers)."""
        return (DEFAULT_TOKEN_PARAM,)

    @property
    def query_secret_params(self) -> tuple[str, ...]:
        """Query parameters that carry a credential (redacted from logged URLs)."""
        return (DEFAULT_TOKEN_PARAM,)


@dataclass(frozen=True, kw_only=True)
class OAuth2Service(ServiceBase):
    """An OAuth 2.0 service: its endpoints, grants, token placement and data centres."""

    auth: ClassVar[str] = "oauth2"

    grant_types: tuple[str, ...] = field(default=("authorization_code",), metadata=_FIXED)
    token_placement: str = field(default="header", metadata=_REVOKES)  # header | query
    token_prefix: str = field(default="Bearer", metadata=_REVOKES)
    token_param: str = field(default=DEFAULT_TOKEN_PARAM, metadata=_REVOKES)
    client_auth: str = field(default="post", metadata=_REVOKES)  # basic | post
    scope_delimiter: str = field(default="comma", metadata=_REVOKES)
    scopes: tuple[str, ...] = field(default=(), metadata=_REVOKES)
    authorize_url: str | None = field(default=None, metadata=_REVOKES)
    token_url: str | None = field(default=None, metadata=_REVOKES)
    refresh_url: str | None = field(default=None, metadata=_REVOKES)
    revoke_url: str | None = field(default=None, metadata=_REVOKES)
    revoke_style: str = field(default="form", metadata=_REVOKES)  # form | query | bearer
    authorize_params: Mapping[str, str] = field(default_factory=_empty, metadata=_REVOKES)
    pkce: bool = field(default=True, metadata=_REVOKES)
    client_id: str | None = field(default=None, metadata=_REVOKES)
    client_secret: SecretStr | None = field(default=None, metadata=_REVOKES)
    data_centres: Mapping[str, DataCentre] = field(default_factory=_empty, repr=False)
    default_data_centre: str | None = None
    defaults: Mapping[str, str] = field(default_factory=_empty)

    @property
    def secret_params(self) -> tuple[str, ...]:
        """The access token's query parameter."""
        return (self.token_param,)

    @property
    def query_secret_params(self) -> tuple[str, ...]:
        """The access token's query parameter."""
        return (self.token_param,)


@dataclass(frozen=True, kw_only=True)
class OAuth1Service(ServiceBase):
    """An OAuth 1.0a service: its three endpoints and where the signature goes."""

    auth: ClassVar[str] = "oauth1"

    token_placement: str = field(default="header", metadata=_REVOKES)  # header | query | form
    request_token_url: str | None = field(default=None, metadata=_REVOKES)
    authorize_url: str | None = field(default=None, metadata=_REVOKES)
    access_token_url: str | None = field(default=None, metadata=_REVOKES)
    consumer_key: str | None = field(default=None, metadata=_REVOKES)
    consumer_secret: SecretStr | None = field(default=None, metadata=_REVOKES)


@dataclass(frozen=True, kw_only=True)
class ApiKeyService(ServiceBase):
    """An API key service: the parameters that carry the key(s)."""

    auth: ClassVar[str] = "api_key"

    params: tuple[ApiKeyParam, ...] = field(default=(), metadata=_REVOKES)

    @property
    def secret_params(self) -> tuple[str, ...]:
        """Every key parameter, and the usual access token parameter."""
        return (*(param.name for param in self.params), DEFAULT_TOKEN_PARAM)

    @property
    def query_secret_params(self) -> tuple[str, ...]:
        """The key parameters sent in the query string, and the usual token parameter."""
        return (
            *(param.name for param in self.params if param.placement == "query"),
            DEFAULT_TOKEN_PARAM,
        )


@dataclass(frozen=True, kw_only=True)
class BasicService(ServiceBase):
    """A service that takes HTTP Basic credentials (a user name and a password)."""

    auth: ClassVar[str] = "basic"


ServiceSpec = OAuth2Service | OAuth1Service | ApiKeyService | BasicService


# --------------------------------------------------------------------------------------
# Connections


@dataclass(frozen=True, kw_only=True)
class ConnectionBase:
    """What every connection has: a service plus the account-level details.

    URL templates of the service are already filled in (data centre, tenant, overrides).
    """

    link_name: str = field(metadata=_FIXED)
    name: str = field(metadata=_FREE)
    service: ServiceBase = field(repr=False, metadata=_FIXED)
    per_user: bool = field(default=False, metadata=_REVOKES)
    base_url: str | None = field(default=None, metadata=_FREE)
    base_url_override: str | None = None
    hosts: tuple[str, ...] = field(default=(), metadata=_FREE)
    accept: str | None = field(default=None, metadata=_FREE)
    missing_env: tuple[str, ...] = ()
    file: str = ""
    line: int = 0

    @property
    def connect_kind(self) -> ConnectKind:
        """How the connection gets its credentials."""
        return ConnectKind.FORM

    @property
    def auth(self) -> str:
        """The auth type, fixed by the service."""
        return self.service.auth

    @property
    def configured(self) -> bool:
        """Whether every referenced environment variable is set."""
        return not self.missing_env

    @property
    def problem(self) -> str | None:
        """Why the connection cannot be used as configured, e.g. ``SDP_CLIENT_ID is not set``."""
        if not self.missing_env:
            return None
        names = ", ".join(self.missing_env)
        verb = "is" if len(self.missing_env) == 1 else "are"
        return f"{names} {verb} not set"

    @property
    def static_credentials(self) -> bool:
        """The credentials come from the file rather than the token store."""
        return False

    @property
    def token_grant(self) -> str | None:
        """The grant type stored credentials were granted by (OAuth 2.0 only)."""
        return None

    @property
    def token_scopes(self) -> tuple[str, ...]:
        """The scopes stored credentials were granted for (OAuth 2.0 only)."""
        return ()

    @property
    def credential_fields(self) -> tuple[CredentialField, ...]:
        """The values a person types in to connect (API key and Basic only)."""
        return ()

    @property
    def endpoint_urls(self) -> tuple[str | None, ...]:
        """The provider endpoints credentials of this connection are sent to."""
        return ()

    @property
    def declared_secrets(self) -> tuple[SecretStr | None, ...]:
        """Every secret the connections file gives this connection (or its service)."""
        return ()


@dataclass(frozen=True, kw_only=True)
class OAuth2Connection(ConnectionBase):
    """A connection to an OAuth 2.0 service: its grant, scopes, client and data centre."""

    service: OAuth2Service = field(repr=False, metadata=_FIXED)
    grant_type: str = field(metadata=_FIXED)
    scopes: tuple[str, ...] = field(default=(), metadata=_REVOKES)
    scope_delimiter: str = field(default="comma", metadata=_REVOKES)
    client_id: str | None = field(default=None, metadata=_REVOKES)
    client_secret: SecretStr | None = field(default=None, metadata=_REVOKES)
    # Connects the connection without a browser (e.g. a Zoho Self Client's token).
    refresh_token: SecretStr | None = field(default=None, metadata=_FREE)
    data_centre: str | None = field(default=None, metadata=_REVOKES)
    portal: str | None = field(default=None, metadata=_FREE)  # SDP cloud: /app/<portal>/
    tenant: str | None = field(default=None, metadata=_REVOKES)
    accounts_url: str | None = field(default=None, metadata=_REVOKES)
    authorize_url: str | None = field(default=None, metadata=_REVOKES)
    token_url: str | None = field(default=None, metadata=_REVOKES)
    refresh_url: str | None = field(default=None, metadata=_REVOKES)
    revoke_url: str | None = None

    @property
    def connect_kind(self) -> ConnectKind:
        """A browser redirect for the code grant; deskwire's own request otherwise."""
        if self.grant_type == "client_credentials":
            return ConnectKind.CLIENT_CREDENTIALS
        return ConnectKind.REDIRECT

    @property
    def scope_string(self) -> str:
        """The scopes joined with the service's delimiter (as sent to the authorize URL)."""
        return SCOPE_DELIMITERS[self.scope_delimiter].join(self.scopes)

    @property
    def token_grant(self) -> str | None:
        """The connection's grant type."""
        return self.grant_type

    @property
    def token_scopes(self) -> tuple[str, ...]:
        """The connection's scopes."""
        return self.scopes

    @property
    def endpoint_urls(self) -> tuple[str | None, ...]:
        """Authorize, token, refresh and revoke URLs."""
        return (self.authorize_url, self.token_url, self.refresh_url, self.revoke_url)

    @property
    def declared_secrets(self) -> tuple[SecretStr | None, ...]:
        """Client secrets (the connection's and the service's) and the bootstrap token."""
        return (self.client_secret, self.refresh_token, self.service.client_secret)


@dataclass(frozen=True, kw_only=True)
class OAuth1Connection(ConnectionBase):
    """A connection to an OAuth 1.0a service: its consumer and its filled-in endpoints."""

    service: OAuth1Service = field(repr=False, metadata=_FIXED)
    consumer_key: str | None = field(default=None, metadata=_REVOKES)
    consumer_secret: SecretStr | None = field(default=None, metadata=_REVOKES)
    request_token_url: str | None = field(default=None, metadata=_REVOKES)
    authorize_url: str | None = field(default=None, metadata=_REVOKES)
    access_token_url: str | None = field(default=None, metadata=_REVOKES)

    @property
    def connect_kind(self) -> ConnectKind:
        """The person is sent to the provider to authorize a request token."""
        return ConnectKind.REDIRECT

    @property
    def endpoint_urls(self) -> tuple[str | None, ...]:
        """Request token, authorize and access token URLs."""
        return (self.authorize_url, self.request_token_url, self.access_token_url)

    @property
    def declared_secrets(self) -> tuple[SecretStr | None, ...]:
        """The consumer secrets (the connection's and the service's)."""
        return (self.consumer_secret, self.service.consumer_secret)


@dataclass(frozen=True, kw_only=True)
class ApiKeyConnection(ConnectionBase):
    """A connection to an API key service; ``values`` when the file gives the keys."""

    service: ApiKeyService = field(repr=False, metadata=_FIXED)
    values: Mapping[str, SecretStr] = field(default_factory=_empty, metadata=_FREE)
    # sdp_onprem: the header the technician key goes in (older builds: TECHNICIAN_KEY).
    key_header: str | None = None

    @property
    def static_credentials(self) -> bool:
        """The keys come from the connections file (``values:``)."""
        return bool(self.values)

    @property
    def credential_fields(self) -> tuple[CredentialField, ...]:
        """One field per key parameter of the service."""
        return tuple(CredentialField(p.name, p.display_name) for p in self.service.params)

    @property
    def declared_secrets(self) -> tuple[SecretStr | None, ...]:
        """The keys of the connections file."""
        return tuple(self.values.values())


@dataclass(frozen=True, kw_only=True)
class BasicConnection(ConnectionBase):
    """A connection to a Basic service; ``values`` when the file gives the credentials."""

    service: BasicService = field(repr=False, metadata=_FIXED)
    values: Mapping[str, SecretStr] = field(default_factory=_empty, metadata=_FREE)

    @property
    def static_credentials(self) -> bool:
        """The user name and password come from the connections file (``values:``)."""
        return bool(self.values)

    @property
    def credential_fields(self) -> tuple[CredentialField, ...]:
        """A user name and a password."""
        return (
            CredentialField("username", "User name", secret=False),
            CredentialField("password", "Password"),
        )

    @property
    def declared_secrets(self) -> tuple[SecretStr | None, ...]:
        """The credentials of the connections file."""
        return tuple(self.values.values())


ConnectionSpec = OAuth2Connection | OAuth1Connection | ApiKeyConnection | BasicConnection
