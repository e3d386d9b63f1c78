"""The ``connections.yml`` model: services (built-in and custom) and connections.

The file is read with the config engine (:mod:`configfiles`) so that every problem can be
reported with its file, line, column and key path; all problems are collected and raised
together as one :class:`ConnectionsConfigError`. What comes out are frozen records, so
nothing downstream re-validates dictionaries.

Secrets are written as ``${ENV_NAME}`` references and resolved from the ``env`` mapping
passed in. A reference to a variable that is not set does not fail the file: the
connection loads as *not configured* and says which variable is missing, so a quick start
without credentials still works.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from configfiles import Node, is_link_name
from connections.config_reader import Fields, FileReport, known_keys, scalar_value
from connections.errors import ConnectionsConfigError
from connections.spec_building import SERVICE_TYPES, build_service_spec
from connections.specs import (
    SCOPE_DELIMITERS,
    ApiKeyParam,
    ConnectionSpec,
    DataCentre,
    ServiceSpec,
)

__all__ = [
    "AUTH_TYPES",
    "GRANT_TYPES",
    "SCOPE_DELIMITERS",
    "ApiKeyParam",
    "ConnectionSpec",
    "ConnectionsConfig",
    "ConnectionsConfigError",
    "DataCentre",
    "ServiceSpec",
    "parse_service",
]

NAME_MAX = 50
AUTH_TYPES = tuple(sorted(SERVICE_TYPES))  # api_key, basic, oauth1, oauth2
GRANT_TYPES = ("authorization_code", "client_credentials")
API_KEY_PLACEMENTS = ("query", "header", "form")
OAUTH2_TOKEN_PLACEMENTS = ("header", "query")
OAUTH1_PLACEMENTS = ("header", "query", "form")
CLIENT_AUTH_METHODS = ("basic", "post")
REVOKE_STYLES = ("form", "query", "bearer")
SDP_KINDS = ("cloud", "onprem")
# Headers an on-premises SDP reads the technician key from: current builds `authtoken`,
# older ones `TECHNICIAN_KEY` (sdp-api.md).
SDP_KEY_HEADERS = ("authtoken", "TECHNICIAN_KEY")

_TEMPLATE = re.compile(r"\{(accounts_url|base_url|tenant)\}")


@dataclass(frozen=True)
class ConnectionsConfig:
    """A parsed connections file: every service (built-in and custom) and every connection."""

    path: Path | None
    services: Mapping[str, ServiceSpec]
    connections: Mapping[str, ConnectionSpec]
    exists: bool = True

    def connection(self, link_name: str) -> ConnectionSpec | None:
        """The connection of a link name, if declared."""
        return self.connections.get(link_name)


# --------------------------------------------------------------------------------------
# Reading helpers


def fill_template(template: str | None, variables: Mapping[str, str | None]) -> str | None:
    """A service URL with ``{accounts_url}``, ``{base_url}``, ``{tenant}`` filled in;
    ``None`` while any of them is unknown."""
    if template is None:
        return None
    unresolved: list[str] = []

    def replace(match: re.Match[str]) -> str:
        value = variables.get(match.group(1))
        if value is None:
            unresolved.append(match.group(1))
            return match.group(0)
        return value.rstrip("/")

    filled = _TEMPLATE.sub(replace, template)
    return None if unresolved else filled


def template_names(*templates: str | None) -> set[str]:
    """The variables the URL templates use (``tenant``, …)."""
    names: set[str] = set()
    for template in templates:
        if template:
            names.update(_TEMPLATE.findall(template))
    return names


_HOST = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def read_hosts(fields: Fields) -> tuple[str, ...]:
    """``hosts:``: more host names a connection's credentials may be sent to."""
    hosts = fields.strings("hosts") or ()
    for host in hosts:
        if not _HOST.match(host.lower()):
            fields.error(
                "hosts", f"'{host}' is not a host name (write api.example.com, no scheme or path)"
            )
    return tuple(host.lower() for host in hosts)


# --------------------------------------------------------------------------------------
# Services

_SERVICE_COMMON = ("name", "auth", "base_url", "hosts", "accept", "description")
_SERVICE_BY_AUTH: Mapping[str, tuple[str, ...]] = {
    "oauth2": (
        "grant_type",
        "grant_types",
        "token_placement",
        "token_prefix",
        "token_param",
        "client_auth",
        "scope_delimiter",
        "scopes",
        "authorize_url",
        "token_url",
        "refresh_url",
        "revoke_url",
        "revoke_style",
        "authorize_params",
        "pkce",
        "client_id",
        "client_secret",
    ),
    "oauth1": (
        "token_placement",
        "request_token_url",
        "authorize_url",
        "access_token_url",
        "consumer_key",
        "consumer_secret",
    ),
    "api_key": ("params",),
    "basic": (),
}
_BUILTIN_ONLY = ("sdp", "data_centres", "default_data_centre", "defaults", "base_url_required")


def _parse_params(ctx: FileReport, fields: Fields) -> tuple[ApiKeyParam, ...]:
    raw = fields.get("params")
    if raw is None:
        fields.missing("params", "is required for auth type api_key")
        return ()
    if not raw.is_seq or not raw.value:
        fields.error("params", "must be a non-empty list of {name, display_name, placement}")
        return ()
    params: list[ApiKeyParam] = []
    seen: set[str] = set()
    for index, item in enumerate(raw.value):
        path = (*fields.path, "params", index)
        if not item.is_map:
            ctx.error(item, path, "must be a mapping with name, display_name and placement")
            continue
        sub = Fields(
            ctx, item, path, dict.fromkeys(("name", "display_name", "placement", "format"))
        )
        name = sub.text("name", required=True, env=False)
        display = sub.text("display_name", env=False, max_len=NAME_MAX) or name
        placement = sub.text("placement", required=True, choices=API_KEY_PLACEMENTS, env=False)
        fmt = sub.text("format", env=False, default="{value}") or "{value}"
        if fmt and "{value}" not in fmt:
            sub.error("format", "must contain {value}")
        if name is None or placement is None or display is None:
            continue
        if name in seen:
            sub.error("name", f"parameter '{name}' is declared twice")
            continue
        seen.add(name)
        params.append(ApiKeyParam(name, display, placement, fmt))
    return tuple(params)


def parse_service(
    ctx: FileReport, key: str, key_node: Node, node: Node, *, builtin: bool
) -> ServiceSpec | None:
    """The service under ``key`` (``None`` after reporting why there is none)."""
    path = ("services", key)
    if not is_link_name(key):
        ctx.error(
            key_node,
            path,
            "service link name must start with a lower-case letter and hold only a-z, 0-9 "
            "and _ (at most 50 characters)",
        )
        return None
    if not node.is_map:
        ctx.error(node, path, "must be a mapping")
        return None
    raw_auth = scalar_value(node, "auth")
    auth = raw_auth if raw_auth in AUTH_TYPES else None
    known = known_keys(_SERVICE_COMMON, _SERVICE_BY_AUTH, auth)
    if builtin:
        known.update(dict.fromkeys(_BUILTIN_ONLY))
    fields = Fields(ctx, node, path, known)
    name = fields.text("name", env=False, max_len=NAME_MAX) or key
    auth = fields.text("auth", required=True, choices=AUTH_TYPES, env=False)
    base_url = fields.text("base_url", url=not builtin)
    hosts = read_hosts(fields)
    accept = fields.text("accept", env=False)
    if auth is None:
        ctx.take_missing()
        return None
    values: dict[str, Any] = {
        "key": key,
        "name": name,
        "auth": auth,
        "builtin": builtin,
        "base_url": base_url,
        "hosts": hosts,
        "accept": accept,
        "file": ctx.file,
        "line": key_node.line,
    }
    if auth == "oauth2":
        grants: tuple[str, ...] | None = None
        if fields.has("grant_types"):
            grants = fields.strings("grant_types")
            items = fields.values["grant_types"].value
            for index, grant in enumerate(grants or ()):
                if grant not in GRANT_TYPES:
                    ctx.error(
                        items[index],
                        (*path, "grant_types", index),
                        f"'{grant}' is not one of {', '.join(GRANT_TYPES)}",
                    )
        single = fields.text("grant_type", choices=GRANT_TYPES, env=False)
        if single:
            grants = (single,)
        values["grant_types"] = grants or ("authorization_code",)
        values["token_placement"] = (
            fields.text("token_placement", choices=OAUTH2_TOKEN_PLACEMENTS, env=False) or "header"
        )
        values["token_prefix"] = fields.text("token_prefix", env=False) or "Bearer"
        values["token_param"] = fields.text("token_param", env=False) or "access_token"
        values["client_auth"] = (
            fields.text("client_auth", choices=CLIENT_AUTH_METHODS, env=False) or "post"
        )
        values["scope_delimiter"] = (
            fields.text("scope_delimiter", choices=SCOPE_DELIMITERS, env=False) or "comma"
        )
        values["scopes"] = fields.strings("scopes") or ()
        url_check = not builtin
        for url_key in ("authorize_url", "token_url", "refresh_url", "revoke_url"):
            values[url_key] = fields.text(url_key, url=url_check)
        values["revoke_style"] = (
            fields.text("revoke_style", choices=REVOKE_STYLES, env=False) or "form"
        )
        extra = fields.mapping("authorize_params")
        values["authorize_params"] = MappingProxyType(
            {str(k): str(v) for k, v in (extra.plain() if extra else {}).items()}
        )
        values["pkce"] = fields.flag("pkce", True)
        values["client_id"] = fields.text("client_id")
        values["client_secret"] = fields.secret("client_secret")
        if not fields.has("token_url"):
            fields.text("token_url", required=True)
        if "authorization_code" in values["grant_types"] and not fields.has("authorize_url"):
            fields.missing("authorize_url", "is required for authorization_code")
    elif auth == "oauth1":
        values["token_placement"] = (
            fields.text("token_placement", choices=OAUTH1_PLACEMENTS, env=False) or "header"
        )
        for url_key in ("request_token_url", "authorize_url", "access_token_url"):
            values[url_key] = fields.text(url_key, required=True, url=not builtin)
        values["consumer_key"] = fields.text("consumer_key")
        values["consumer_secret"] = fields.secret("consumer_secret")
    elif auth == "api_key":
        values["params"] = _parse_params(ctx, fields)
    if builtin:
        values["sdp"] = fields.text("sdp", choices=SDP_KINDS, env=False)
        values["base_url_required"] = fields.flag("base_url_required", False)
        centres_node = fields.mapping("data_centres")
        centres: Mapping[str, Any] = centres_node.plain() if centres_node else {}
        values["data_centres"] = MappingProxyType(
            {
                str(dc): DataCentre(str(dc), str(entry["accounts_url"]), entry.get("base_url"))
                for dc, entry in centres.items()
            }
        )
        values["default_data_centre"] = fields.text("default_data_centre", env=False)
        defaults_node = fields.mapping("defaults")
        defaults: Mapping[str, Any] = defaults_node.plain() if defaults_node else {}
        values["defaults"] = MappingProxyType({str(k): str(v) for k, v in defaults.items()})
    values["unset_fields"] = tuple(ctx.unset_fields)
    values["missing_env"] = ctx.take_missing()
    return build_service_spec(values)
