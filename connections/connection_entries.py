"""The ``connections:`` entries of the connections file: each one a :class:`ConnectionSpec`.

A connection is a service plus account-level details (scopes, credentials, data centre,
tenant, base URL); which keys apply depends on the service's auth type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pydantic import SecretStr

from configfiles import Node, did_you_mean, is_link_name
from connections.config import (
    GRANT_TYPES,
    NAME_MAX,
    SCOPE_DELIMITERS,
    SDP_KEY_HEADERS,
    ConnectionSpec,
    ServiceSpec,
    fill_template,
    read_hosts,
    template_names,
)
from connections.config_reader import Fields, FileReport, known_keys, scalar_value
from connections.spec_building import build_connection_spec
from connections.specs import (
    ApiKeyService,
    OAuth1Service,
    OAuth2Service,
)

_CONNECTION_COMMON = (
    "name",
    "service",
    "description",
    "per_user",
    "base_url",
    "hosts",
    "accept",
)
_CONNECTION_BY_AUTH: Mapping[str, tuple[str, ...]] = {
    "oauth2": (
        "scopes",
        "scope_delimiter",
        "grant_type",
        "client_id",
        "client_secret",
        "refresh_token",
        "data_centre",
        "accounts_url",
        "portal",
        "tenant",
    ),
    "oauth1": ("consumer_key", "consumer_secret"),
    "api_key": ("values", "key_header"),
    "basic": ("values",),
}


def parse_connection(
    ctx: FileReport, key: str, key_node: Node, node: Node, services: Mapping[str, ServiceSpec]
) -> ConnectionSpec | None:
    """The connection under link name ``key`` (``None`` after reporting why there is none)."""
    path = ("connections", key)
    if not is_link_name(key):
        ctx.error(
            key_node,
            path,
            f"link name '{key}' must start with a lower-case letter and hold only a-z, 0-9 "
            "and _ (at most 50 characters)",
        )
        return None
    if not node.is_map:
        ctx.error(node, path, "must be a mapping with at least `service:`")
        return None
    service_key = scalar_value(node, "service")
    service = services.get(service_key) if isinstance(service_key, str) else None
    known = known_keys(
        _CONNECTION_COMMON, _CONNECTION_BY_AUTH, service.auth if service else "unknown"
    )
    fields = Fields(ctx, node, path, known)
    name = fields.text("name", env=False, max_len=NAME_MAX) or key
    fields.text("description", env=False)
    if service is None:
        written = fields.text("service", required=True, env=False)
        if written is not None:
            fields.error(
                "service", f"unknown service '{written}'" + did_you_mean(written, services)
            )
        ctx.take_missing()
        return None
    values: dict[str, Any] = {
        "link_name": key,
        "name": name,
        "service": service,
        "file": ctx.file,
        "line": key_node.line,
        "per_user": fields.flag("per_user", False),
        "accept": fields.text("accept", env=False) or service.accept,
        "hosts": read_hosts(fields),
    }
    base_override = fields.text("base_url", url=True)
    variables: dict[str, str | None] = {"base_url": base_override}
    if isinstance(service, OAuth2Service):
        _oauth2_connection(ctx, fields, service, values, variables)
    elif isinstance(service, OAuth1Service):
        values["consumer_key"] = fields.text("consumer_key") or service.consumer_key
        values["consumer_secret"] = fields.secret("consumer_secret") or service.consumer_secret
        for required in ("consumer_key", "consumer_secret"):
            if (
                values[required] is None
                and not fields.has(required)
                and not _service_has(service, required)
            ):
                fields.missing(required, _required_here_or(service))
    else:
        values["values"] = _static_values(ctx, fields, service)
        if service.sdp == "onprem":
            values["key_header"] = fields.text("key_header", choices=SDP_KEY_HEADERS, env=False)
        elif fields.has("key_header"):
            fields.error("key_header", "only applies to the sdp_onprem service")
    values["base_url"] = (
        fill_template(service.base_url, variables) if service.base_url else base_override
    )
    if base_override:
        values["base_url"] = values["base_url_override"] = base_override.rstrip("/")
    if service.base_url_required and not fields.has("base_url"):
        fields.missing("base_url", f"is required for service {service.key}")
    for url_key in (
        "authorize_url",
        "token_url",
        "refresh_url",
        "revoke_url",
        "request_token_url",
        "access_token_url",
    ):
        values[url_key] = fill_template(getattr(service, url_key, None), variables)
    values["missing_env"] = tuple(dict.fromkeys(service.missing_env + ctx.take_missing()))
    return build_connection_spec(values)


def _service_has(service: ServiceSpec, key: str) -> bool:
    return getattr(service, key, None) is not None or key in service.unset_fields


def _required_here_or(service: ServiceSpec) -> str:
    if service.builtin:
        return f"is required for service {service.key}"
    return f"is required (here or on service '{service.key}')"


def _oauth2_connection(
    ctx: FileReport,
    fields: Fields,
    service: OAuth2Service,
    values: dict[str, Any],
    variables: dict[str, str | None],
) -> None:
    grant = fields.text("grant_type", choices=GRANT_TYPES, env=False)
    if grant is not None and grant not in service.grant_types:
        fields.error(
            "grant_type",
            f"service {service.key} supports {', '.join(service.grant_types)}, not {grant}",
        )
        grant = None
    values["grant_type"] = grant or service.grant_types[0]
    scopes = fields.strings("scopes")
    values["scopes"] = scopes if scopes is not None else service.scopes
    values["scope_delimiter"] = (
        fields.text("scope_delimiter", choices=SCOPE_DELIMITERS, env=False)
        or service.scope_delimiter
    )
    values["client_id"] = fields.text("client_id") or service.client_id
    values["client_secret"] = fields.secret("client_secret") or service.client_secret
    for required in ("client_id", "client_secret"):
        if not fields.has(required) and not _service_has(service, required):
            fields.missing(required, _required_here_or(service))
    # The bootstrap refresh token is optional: an unset variable just means "connect by the
    # code flow instead", so it does not make the connection "not configured".
    missing_before, unset_before = list(ctx.missing), list(ctx.unset_fields)
    values["refresh_token"] = fields.secret("refresh_token")
    ctx.missing, ctx.unset_fields = missing_before, unset_before
    if fields.has("refresh_token") and values["grant_type"] != "authorization_code":
        fields.error("refresh_token", "only applies to the authorization_code grant")

    uses = template_names(service.authorize_url, service.token_url, service.base_url)
    if service.data_centres:
        dc = (
            fields.text("data_centre", choices=service.data_centres, env=False)
            or service.default_data_centre
        )
        values["data_centre"] = dc
        centre = service.data_centres.get(dc or "")
        accounts = fields.text("accounts_url", url=True)
        values["accounts_url"] = (accounts or (centre.accounts_url if centre else "")).rstrip("/")
        variables["accounts_url"] = values["accounts_url"]
        if variables.get("base_url") is None and centre is not None:
            variables["base_url"] = centre.base_url
    else:
        for key in ("data_centre", "accounts_url"):
            if fields.has(key):
                fields.error(key, f"service {service.key} has no data centres")
    if service.sdp == "cloud":
        portal = fields.text("portal")
        if portal is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", portal):
            fields.error("portal", "must be the portal name as in /app/<portal>/ (no slashes)")
            portal = None
        values["portal"] = portal
    elif fields.has("portal"):
        fields.error("portal", "only applies to the sdp service")
    if "tenant" in uses:
        tenant = fields.text("tenant") or service.defaults.get("tenant")
        if tenant is not None and not re.fullmatch(r"[A-Za-z0-9.-]+", tenant):
            fields.error("tenant", "must be a tenant id or domain (letters, digits, . and -)")
            tenant = None
        values["tenant"] = tenant
        variables["tenant"] = tenant
    elif fields.has("tenant"):
        fields.error("tenant", f"service {service.key} has no tenant")


def _static_values(
    ctx: FileReport, fields: Fields, service: ServiceSpec
) -> Mapping[str, SecretStr]:
    node = fields.mapping("values")
    if node is None:
        return MappingProxyType({})
    expected = (
        [param.name for param in service.params]
        if isinstance(service, ApiKeyService)
        else ["username", "password"]
    )
    sub = Fields(ctx, node, (*fields.path, "values"), dict.fromkeys(expected))
    result: dict[str, SecretStr] = {}
    for name in expected:
        if not sub.has(name):
            sub.missing(name)
            continue
        value = sub.secret(name)
        if value is not None:
            result[name] = value
    return MappingProxyType(result)
