"""Connections: services, connections, auth flows, encrypted token store, authed clients.

The worker and the web use :class:`Connections`; configuration comes from
:func:`load_config`. Everything is passed in; nothing here reads settings.
"""

from connections.config import ApiKeyParam, ConnectionsConfig, ConnectionSpec, ServiceSpec
from connections.config_file import builtin_services, load_config, parse_config
from connections.editing import EditCheck, check_connection_edit, check_service_edit
from connections.errors import (
    ClientAuthError,
    ConfigIssue,
    ConnectionInUseError,
    ConnectionRevokedError,
    ConnectionsConfigError,
    ConnectionsError,
    InsecureURLError,
    NeedsReconnectError,
    NotConfiguredError,
    NotConnectedError,
    NotEditableError,
    OAuthCallbackError,
    SecretKeyError,
    TokenRequestError,
    TransientTokenError,
    UnknownConnectionError,
    UnsupportedOperationError,
)
from connections.facade import (
    CALLBACK_PATH,
    ConnectAttempt,
    Connections,
    ConnectionState,
    ConnectionStatus,
    RevokeOutcome,
    SdpEndpoint,
)
from connections.store import rotate_keys

__all__ = [
    "CALLBACK_PATH",
    "ApiKeyParam",
    "ClientAuthError",
    "ConfigIssue",
    "ConnectAttempt",
    "ConnectionInUseError",
    "ConnectionRevokedError",
    "ConnectionSpec",
    "ConnectionState",
    "ConnectionStatus",
    "Connections",
    "ConnectionsConfig",
    "ConnectionsConfigError",
    "ConnectionsError",
    "EditCheck",
    "InsecureURLError",
    "NeedsReconnectError",
    "NotConfiguredError",
    "NotConnectedError",
    "NotEditableError",
    "OAuthCallbackError",
    "RevokeOutcome",
    "SdpEndpoint",
    "SecretKeyError",
    "ServiceSpec",
    "TokenRequestError",
    "TransientTokenError",
    "UnknownConnectionError",
    "UnsupportedOperationError",
    "builtin_services",
    "check_connection_edit",
    "check_service_edit",
    "load_config",
    "parse_config",
    "rotate_keys",
]
