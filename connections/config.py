"""The ``connections.yml`` model: services (built-in and custom) and connections.

The file is read with ruamel.yaml so that every problem can be reported with its file,
line, column and key path; all problems are collected and raised together as one
:class:`ConnectionsConfigError`. What comes out are frozen records, so nothing downstream
re-validates dictionaries.

Secrets are written as ``${ENV_NAME}`` references and resolved from the ``env`` mapping
passed in. A reference to a variable that is not set does not fail the file: the
connection loads as *not configured* and says which variable is missing, so a quick start
without credentials still works.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import SecretStr
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from connections.errors import ConfigIssue, ConnectionsConfigError
from connections.specs import (
    SCOPE_DELIMITERS,
    SERVICE_TYPES,
    ApiKeyParam,
    ApiKeyService,
    ConnectionSpec,
    DataCentre,
    OAuth1Service,
    OAuth2Service,
    ServiceSpec,
    build_connection_spec,
    build_service_spec,
)

__all__ = [
    "AUTH_TYPES",
    "GRANT_TYPES",
    "LINK_NAME",
    "SCOPE_DELIMITERS",
    "ApiKeyParam",
    "ConnectionSpec",
    "ConnectionsConfig",
    "ConnectionsConfigError",
    "DataCentre",
    "ServiceSpec",
    "builtin_services",
    "load_config",
    "parse_config",
]

LINK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
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

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TEMPLATE = re.compile(r"\{(accounts_url|base_url|tenant)\}")
_URL_START = ("https://", "http://")


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


class _Context:
    """Collects issues and missing environment variables while one file is read."""

    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.issues: list[ConfigIssue] = []
        self.missing: list[str] = []
        self.unset_fields: list[str] = []

    def issue(self, line: int, column: int, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, line, column, path, message))

    def take_missing(self) -> tuple[str, ...]:
        missing = tuple(dict.fromkeys(self.missing))
        self.missing = []
        self.unset_fields = []
        return missing


def _key_pos(node: CommentedMap, key: str) -> tuple[int, int]:
    try:
        line, col = node.lc.key(key)
    except (KeyError, TypeError, AttributeError):
        return _node_pos(node)
    return int(line) + 1, int(col) + 1


def _value_pos(node: CommentedMap, key: str) -> tuple[int, int]:
    # An empty value (``key:`` and nothing) has the position of whatever follows it, often
    # the next line; the key is where the reader has to look.
    if node.get(key) is None:
        return _key_pos(node, key)
    try:
        line, col = node.lc.value(key)
    except (KeyError, TypeError, AttributeError):
        return _key_pos(node, key)
    return int(line) + 1, int(col) + 1


def _item_pos(node: Any, index: int) -> tuple[int, int]:
    try:
        line, col = node.lc.item(index)
    except (KeyError, IndexError, TypeError, AttributeError):
        return _node_pos(node)
    return int(line) + 1, int(col) + 1


def _node_pos(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return 1, 1
    return int(lc.line) + 1, int(lc.col) + 1


def _kind_of(value: Any) -> str:
    """How a YAML value reads in a message: a mapping, a list, true/false."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    return type(value).__name__


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class _Fields:
    """Typed reads of one mapping node; every problem is recorded with its position.

    ``anchor``: where the key holding this mapping is (the mapping itself for list items
    and the document); a missing key is reported there. Other problems are reported at the
    key at fault (unknown, not applicable) or at its value (wrong type or value).
    """

    def __init__(
        self,
        ctx: _Context,
        node: CommentedMap,
        path: str,
        known: Mapping[str, str | None],
        anchor: tuple[int, int],
    ) -> None:
        self.ctx = ctx
        self.node = node
        self.path = path
        self.anchor = anchor
        for key in node:
            if not isinstance(key, str) or key not in known:
                line, col = _key_pos(node, key)
                self.ctx.issue(
                    line,
                    col,
                    f"{path}.{key}",
                    "unknown key" + _did_you_mean(str(key), known),
                )
            elif known[key] is not None:
                line, col = _key_pos(node, key)
                self.ctx.issue(line, col, f"{path}.{key}", str(known[key]))

    def has(self, key: str) -> bool:
        return key in self.node

    def where(self, key: str) -> tuple[int, int]:
        """The value of ``key`` (its key when left empty), or the anchor when it is missing."""
        return _value_pos(self.node, key) if key in self.node else self.anchor

    def missing(self, key: str, message: str = "is required") -> None:
        """Report a required key that is not there (or left empty)."""
        self.ctx.issue(*self.where(key), f"{self.path}.{key}", message)

    def error(self, key: str, message: str) -> None:
        line, col = self.where(key)
        self.ctx.issue(line, col, f"{self.path}.{key}", message)

    def text(
        self,
        key: str,
        *,
        required: bool = False,
        choices: Iterable[str] | None = None,
        env: bool = True,
        url: bool = False,
        max_len: int | None = None,
        default: str | None = None,
    ) -> str | None:
        if key not in self.node or self.node[key] is None:
            if required:
                self.missing(key)
            return default
        raw = self.node[key]
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            self.error(key, f"must be a string, not {_kind_of(raw)}")
            return default
        value: str | None = str(raw)
        if env:
            value = self._interpolate(key, str(raw))
            if value is None:
                return None
        assert value is not None
        if choices is not None:
            options = tuple(choices)
            if value not in options:
                self.error(
                    key,
                    f"'{value}' is not one of {', '.join(options)}" + _did_you_mean(value, options),
                )
                return default
        if url and not value.startswith(_URL_START):
            self.error(key, f"'{value}' is not an http(s) URL")
            return default
        if max_len is not None and len(value) > max_len:
            self.error(key, f"is {len(value)} characters long; at most {max_len} are allowed")
            return default
        return value

    def secret(self, key: str) -> SecretStr | None:
        value = self.text(key)
        return None if value is None else SecretStr(value)

    def flag(self, key: str, default: bool) -> bool:
        if key not in self.node:
            return default
        raw = self.node[key]
        if not isinstance(raw, bool):
            self.error(key, "must be true or false")
            return default
        return raw

    def strings(self, key: str) -> tuple[str, ...] | None:
        if key not in self.node:
            return None
        raw = self.node[key]
        if not isinstance(raw, CommentedSeq | list):
            self.error(key, "must be a list, e.g. [a.read, b.write]")
            return None
        items: list[str] = []
        for index, item in enumerate(raw):
            if isinstance(item, bool) or not isinstance(item, str | int | float) or not str(item):
                line, col = _item_pos(raw, index)
                self.ctx.issue(line, col, f"{self.path}.{key}[{index}]", "must be a string")
                continue
            items.append(str(item))
        return tuple(items)

    def mapping(self, key: str) -> CommentedMap | None:
        if key not in self.node or self.node[key] is None:
            return None
        raw = self.node[key]
        if not isinstance(raw, CommentedMap):
            self.error(key, "must be a mapping")
            return None
        return raw

    def _interpolate(self, key: str, raw: str) -> str | None:
        """Fill ``${NAME}`` references; an unset variable is recorded, not an error."""
        leftover = _ENV_REF.sub("", raw)
        if "${" in leftover:
            self.error(key, "malformed ${...} reference; write ${ENV_NAME} (letters, digits, _)")
            return None
        missing = [name for name in _ENV_REF.findall(raw) if name not in self.ctx.env]
        if missing:
            self.ctx.missing.extend(missing)
            self.ctx.unset_fields.append(key)
            return None
        return _ENV_REF.sub(lambda m: self.ctx.env[m.group(1)], raw)


def _fill(template: str | None, variables: Mapping[str, str | None]) -> str | None:
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


def _template_names(*templates: str | None) -> set[str]:
    names: set[str] = set()
    for template in templates:
        if template:
            names.update(_TEMPLATE.findall(template))
    return names


_HOST = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def _hosts(fields: _Fields) -> tuple[str, ...]:
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


def _known_keys(
    common: Iterable[str], by_auth: Mapping[str, Iterable[str]], auth: str | None
) -> dict[str, str | None]:
    """Keys allowed in a node: ``None`` means fine, a string is why the key does not apply."""
    known: dict[str, str | None] = dict.fromkeys(common)
    for keys in by_auth.values():
        for key in keys:
            known.setdefault(key, f"is not used by auth type {auth}")
    applicable = by_auth.get(auth or "", None)
    for key in list(known):
        if applicable is None or key in applicable:
            known[key] = None if (applicable is None or key in applicable) else known[key]
    return known


def _parse_params(ctx: _Context, fields: _Fields) -> tuple[ApiKeyParam, ...]:
    raw = fields.node.get("params")
    if raw is None:
        fields.missing("params", "is required for auth type api_key")
        return ()
    if not isinstance(raw, CommentedSeq) or not raw:
        fields.error("params", "must be a non-empty list of {name, display_name, placement}")
        return ()
    params: list[ApiKeyParam] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        path = f"{fields.path}.params[{index}]"
        where = _item_pos(raw, index)
        if not isinstance(item, CommentedMap):
            ctx.issue(*where, path, "must be a mapping with name, display_name and placement")
            continue
        sub = _Fields(
            ctx, item, path, dict.fromkeys(("name", "display_name", "placement", "format")), where
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


def _parse_service(
    ctx: _Context, parent: CommentedMap, key: Any, *, builtin: bool
) -> ServiceSpec | None:
    path = f"services.{key}"
    node = parent[key]
    key_pos = _key_pos(parent, key)
    if not isinstance(key, str) or not LINK_NAME.match(key):
        ctx.issue(
            *key_pos,
            path,
            "service link name must start with a lower-case letter and hold only a-z, 0-9 "
            "and _ (at most 50 characters)",
        )
        return None
    if not isinstance(node, CommentedMap):
        ctx.issue(*_value_pos(parent, key), path, "must be a mapping")
        return None
    raw_auth = node.get("auth")
    auth = raw_auth if raw_auth in AUTH_TYPES else None
    known = _known_keys(_SERVICE_COMMON, _SERVICE_BY_AUTH, auth)
    if builtin:
        known.update(dict.fromkeys(_BUILTIN_ONLY))
    fields = _Fields(ctx, node, path, known, key_pos)
    name = fields.text("name", env=False, max_len=NAME_MAX) or key
    auth = fields.text("auth", required=True, choices=AUTH_TYPES, env=False)
    base_url = fields.text("base_url", url=not builtin)
    hosts = _hosts(fields)
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
        "line": key_pos[0],
    }
    if auth == "oauth2":
        grants: tuple[str, ...] | None = None
        if fields.has("grant_types"):
            grants = fields.strings("grant_types")
            for index, grant in enumerate(grants or ()):
                if grant not in GRANT_TYPES:
                    ctx.issue(
                        *_item_pos(node["grant_types"], index),
                        f"{path}.grant_types[{index}]",
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
            {str(k): str(v) for k, v in (extra or {}).items()}
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
        centres: Mapping[str, Any] = fields.mapping("data_centres") or {}
        values["data_centres"] = MappingProxyType(
            {
                str(dc): DataCentre(str(dc), str(entry["accounts_url"]), entry.get("base_url"))
                for dc, entry in centres.items()
            }
        )
        values["default_data_centre"] = fields.text("default_data_centre", env=False)
        defaults: Mapping[str, Any] = fields.mapping("defaults") or {}
        values["defaults"] = MappingProxyType({str(k): str(v) for k, v in defaults.items()})
    values["unset_fields"] = tuple(ctx.unset_fields)
    values["missing_env"] = ctx.take_missing()
    return build_service_spec(values)


_BUILTINS: Mapping[str, ServiceSpec] | None = None


def builtin_services() -> Mapping[str, ServiceSpec]:
    """The built-in service catalogue (``catalogue.yml`` inside this package)."""
    global _BUILTINS
    if _BUILTINS is None:
        text = resources.files("connections").joinpath("catalogue.yml").read_text("utf-8")
        ctx = _Context("connections/catalogue.yml", {})
        root = _load_yaml(ctx, text)
        services: dict[str, ServiceSpec] = {}
        catalogue = root.get("services") if root is not None else None
        if not isinstance(catalogue, CommentedMap):  # pragma: no cover - a bug of ours
            catalogue = CommentedMap()
        for key in catalogue:
            spec = _parse_service(ctx, catalogue, key, builtin=True)
            if spec is not None:
                services[spec.key] = spec
        if ctx.issues:  # pragma: no cover - a broken catalogue is a bug of ours
            raise ConnectionsConfigError(ctx.issues)
        _BUILTINS = MappingProxyType(services)
    return _BUILTINS


# --------------------------------------------------------------------------------------
# Connections

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


def _parse_connection(
    ctx: _Context, parent: CommentedMap, key: Any, services: Mapping[str, ServiceSpec]
) -> ConnectionSpec | None:
    path = f"connections.{key}"
    node = parent[key]
    key_pos = _key_pos(parent, key)
    if not isinstance(key, str) or not LINK_NAME.match(key):
        ctx.issue(
            *key_pos,
            path,
            f"link name '{key}' must start with a lower-case letter and hold only a-z, 0-9 "
            "and _ (at most 50 characters)",
        )
        return None
    if not isinstance(node, CommentedMap):
        ctx.issue(*_value_pos(parent, key), path, "must be a mapping with at least `service:`")
        return None
    service_key = node.get("service")
    service = services.get(service_key) if isinstance(service_key, str) else None
    known = _known_keys(
        _CONNECTION_COMMON, _CONNECTION_BY_AUTH, service.auth if service else "unknown"
    )
    fields = _Fields(ctx, node, path, known, key_pos)
    name = fields.text("name", env=False, max_len=NAME_MAX) or key
    fields.text("description", env=False)
    if service is None:
        if service_key is None:
            fields.missing("service")
        else:
            fields.error(
                "service",
                f"unknown service '{service_key}'" + _did_you_mean(str(service_key), services),
            )
        ctx.take_missing()
        return None
    values: dict[str, Any] = {
        "link_name": key,
        "name": name,
        "service": service,
        "file": ctx.file,
        "line": key_pos[0],
        "per_user": fields.flag("per_user", False),
        "accept": fields.text("accept", env=False) or service.accept,
        "hosts": _hosts(fields),
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
    values["base_url"] = _fill(service.base_url, variables) if service.base_url else base_override
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
        values[url_key] = _fill(getattr(service, url_key, None), variables)
    values["missing_env"] = tuple(dict.fromkeys(service.missing_env + ctx.take_missing()))
    return build_connection_spec(values)


def _service_has(service: ServiceSpec, key: str) -> bool:
    return getattr(service, key, None) is not None or key in service.unset_fields


def _required_here_or(service: ServiceSpec) -> str:
    if service.builtin:
        return f"is required for service {service.key}"
    return f"is required (here or on service '{service.key}')"


def _oauth2_connection(
    ctx: _Context,
    fields: _Fields,
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

    uses = _template_names(service.authorize_url, service.token_url, service.base_url)
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


def _static_values(ctx: _Context, fields: _Fields, service: ServiceSpec) -> Mapping[str, SecretStr]:
    node = fields.mapping("values")
    if node is None:
        return MappingProxyType({})
    expected = (
        [param.name for param in service.params]
        if isinstance(service, ApiKeyService)
        else ["username", "password"]
    )
    sub = _Fields(
        ctx, node, f"{fields.path}.values", dict.fromkeys(expected), _key_pos(fields.node, "values")
    )
    result: dict[str, SecretStr] = {}
    for name in expected:
        if not sub.has(name):
            sub.missing(name)
            continue
        value = sub.secret(name)
        if value is not None:
            result[name] = value
    return MappingProxyType(result)


# --------------------------------------------------------------------------------------
# Files


def _load_yaml(ctx: _Context, text: str) -> CommentedMap | None:
    yaml = YAML(typ="rt")
    try:
        root = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = (mark.line + 1) if mark is not None else 1
        column = (mark.column + 1) if mark is not None else 1
        problem = (exc.problem or str(exc)).strip()
        if "duplicate key" in problem:
            problem = problem.replace("found duplicate key", "duplicate key").split(" with value")[
                0
            ]
        context = (exc.context or "").strip()
        started = exc.context_mark
        if context and started is not None and started is not mark:
            # e.g. an unclosed [ is noticed where the file ends; say where it was opened.
            context += f" (from line {started.line + 1}, column {started.column + 1})"
        where = f"{context}: " if context and "duplicate" not in problem else ""
        ctx.issue(line, column, "(yaml)", f"{where}{problem}")
        return None
    except YAMLError as exc:
        ctx.issue(1, 1, "(yaml)", str(exc))
        return None
    if root is None:
        return CommentedMap()
    if not isinstance(root, CommentedMap):
        ctx.issue(1, 1, "(file)", "must be a mapping with `services:` and `connections:`")
        return None
    return root


def parse_config(
    text: str, env: Mapping[str, str], *, source: str = "connections.yml", path: Path | None = None
) -> ConnectionsConfig:
    """Parse connections YAML text; raise :class:`ConnectionsConfigError` listing every problem."""
    ctx = _Context(source, env)
    root = _load_yaml(ctx, text)
    if root is None:
        raise ConnectionsConfigError(ctx.issues)
    _Fields(ctx, root, "(file)", dict.fromkeys(("services", "connections", "version")), (1, 1))
    builtins = builtin_services()
    services: dict[str, ServiceSpec] = dict(builtins)
    for section in ("services", "connections"):
        if root.get(section) is not None and not isinstance(root[section], CommentedMap):
            line, col = _value_pos(root, section)
            ctx.issue(line, col, section, "must be a mapping keyed by link name")
    custom = root.get("services")
    if isinstance(custom, CommentedMap):
        for key in custom:
            if key in builtins:
                line, col = _key_pos(custom, key)
                ctx.issue(
                    line,
                    col,
                    f"services.{key}",
                    f"'{key}' is a built-in service; give the custom service another key",
                )
                continue
            spec = _parse_service(ctx, custom, key, builtin=False)
            if spec is not None:
                services[key] = spec
    connections: dict[str, ConnectionSpec] = {}
    declared = root.get("connections")
    if isinstance(declared, CommentedMap):
        for key in declared:
            spec_c = _parse_connection(ctx, declared, key, services)
            if spec_c is not None:
                connections[key] = spec_c
    if ctx.issues:
        raise ConnectionsConfigError(ctx.issues)
    return ConnectionsConfig(
        path=path,
        services=MappingProxyType(services),
        connections=MappingProxyType(connections),
    )


def load_config(path: Path, env: Mapping[str, str]) -> ConnectionsConfig:
    """Read a connections file; a missing file is an empty configuration (no connections).

    Raises :class:`ConnectionsConfigError` (with ``.errors``) when the file is malformed.
    """
    path = Path(path)
    if not path.exists():
        return ConnectionsConfig(
            path=path,
            services=builtin_services(),
            connections=MappingProxyType({}),
            exists=False,
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConnectionsConfigError(
            [ConfigIssue(str(path), 1, 1, "(file)", f"cannot be read: {exc}")]
        ) from None
    return parse_config(text, env, source=str(path), path=path)
