"""Building spec records from read values: the one place an ``auth:`` text picks a type.

The reader (:mod:`connections.config`, :mod:`connections.connection_entries`) collects a
mapping of values; :func:`build_service_spec` and :func:`build_connection_spec` turn it into
the spec type of its auth type (:mod:`connections.specs`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from connections.specs import (
    ApiKeyConnection,
    ApiKeyService,
    BasicConnection,
    BasicService,
    ConnectionSpec,
    OAuth1Connection,
    OAuth1Service,
    OAuth2Connection,
    OAuth2Service,
    ServiceSpec,
)

__all__ = ["SERVICE_TYPES", "build_connection_spec", "build_service_spec"]

# The one place an ``auth:`` text picks a type.
SERVICE_TYPES: Mapping[str, type[ServiceSpec]] = MappingProxyType(
    {cls.auth: cls for cls in (ApiKeyService, BasicService, OAuth1Service, OAuth2Service)}
)

_CONNECTION_TYPES: Mapping[type[ServiceSpec], type[ConnectionSpec]] = MappingProxyType(
    {
        OAuth2Service: OAuth2Connection,
        OAuth1Service: OAuth1Connection,
        ApiKeyService: ApiKeyConnection,
        BasicService: BasicConnection,
    }
)


def _own_values(cls: type[Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values that are fields of ``cls``; the reader may hand in others only empty."""
    own = {spec_field.name for spec_field in dataclasses.fields(cls) if spec_field.init}
    stray = sorted(key for key, value in values.items() if key not in own and value)
    if stray:  # a bug of the reader: it read a field this type does not have
        raise TypeError(f"{cls.__name__} has no field {', '.join(stray)}")
    return {key: value for key, value in values.items() if key in own}


def build_service_spec(values: Mapping[str, Any]) -> ServiceSpec:
    """The service of auth type ``values["auth"]`` (a key of :data:`SERVICE_TYPES`)."""
    cls = SERVICE_TYPES[values["auth"]]
    return cls(**_own_values(cls, {k: v for k, v in values.items() if k != "auth"}))


def build_connection_spec(values: Mapping[str, Any]) -> ConnectionSpec:
    """The connection of ``values["service"]``'s auth type from read values."""
    cls = _CONNECTION_TYPES[type(values["service"])]
    return cls(**_own_values(cls, values))
