"""Import a Zoho extension manifest (``plugin-manifest.json``) into connections.

A manifest declares a Zoho connection under ``zohoAuthorisation`` and third-party ones
under ``connectors`` (``connectionLinkName``, ``connectionName``, ``serviceName``,
``userAccess``, ``isUserDefinedService``, ``scope``). Known services map to deskwire's
built-ins; unknown ones become custom OAuth 2.0 services whose URLs and client
credentials are ``${ENV}`` references, so the file stays valid and the connection shows
"not configured" until someone fills them in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from configfiles import is_link_name
from connections.config import NAME_MAX
from connections.config_file import builtin_services
from connections.specs import OAuth2Service
from connections.yamlfile import MergeReport, dump_yaml, merge_entries
from deskwire.file_writes import locked, write_atomically

__all__ = ["ManifestError", "ManifestImport", "import_manifest", "merge_into_file"]

# Zoho service names (as in manifests) that have a built-in counterpart here.
_KNOWN_SERVICES: Mapping[str, str] = {
    "slack": "slack",
    "github": "github",
    "pagerduty": "pagerduty",
    "jira": "jira",
    "atlassian": "jira",
    "microsoft": "microsoft_graph",
    "office365": "microsoft_graph",
    "microsoftgraph": "microsoft_graph",
    "servicedeskplus": "sdp",
    "sdpondemand": "sdp",
}


class ManifestError(ValueError):
    """The manifest cannot be imported; ``problems`` lists why."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclass
class ManifestImport:
    """Services and connections (as connections.yml entries) read from a manifest."""

    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_yaml(self) -> str:
        """The entries as a connections.yml fragment."""
        document: dict[str, Any] = {}
        if self.services:
            document["services"] = self.services
        if self.connections:
            document["connections"] = self.connections
        return dump_yaml(document)


def _env_prefix(link_name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", link_name.upper()).strip("_")


def _service_key(name: str) -> str:
    key = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if not key or not key[0].isalpha():
        key = "svc_" + key
    return key[:50]


def _connection(
    result: ManifestImport, entry: Any, where: str, problems: list[str], *, zoho: bool
) -> None:
    if not isinstance(entry, Mapping):
        problems.append(f"{where} must be an object")
        return
    link = entry.get("connectionLinkName")
    if not is_link_name(link):
        problems.append(
            f"{where}.connectionLinkName {link!r} is not a valid link name "
            "(lower-case letter first, then a-z, 0-9, _; at most 50)"
        )
        return
    if link in result.connections:
        problems.append(f"{where}: link name '{link}' appears twice")
        return
    name = str(entry.get("connectionName") or link)
    if len(name) > NAME_MAX:
        result.notes.append(f"{link}: connectionName shortened to {NAME_MAX} characters")
        name = name[:NAME_MAX]
    service_name = str(entry.get("serviceName") or "")
    scopes = entry.get("scope") or entry.get("scopes") or []
    if isinstance(scopes, str):
        scopes = [part for part in re.split(r"[,\s]+", scopes) if part]
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        problems.append(f"{where}.scope must be a list of strings")
        return
    prefix = _env_prefix(link)
    connection: dict[str, Any] = {"name": name}
    builtins = builtin_services()
    if zoho:
        service = "sdp" if any(s.startswith("SDPOnDemand.") for s in scopes) else "zoho"
    else:
        service = _KNOWN_SERVICES.get(re.sub(r"[^a-z0-9]", "", service_name.lower()), "")
    if not service:
        service = _service_key(service_name or link)
        if service in builtins:
            service = f"{service}_custom"
        if service not in result.services:
            sprefix = _env_prefix(service)
            result.services[service] = {
                "name": (service_name or link)[:NAME_MAX],
                "auth": "oauth2",
                "grant_type": "authorization_code",
                "authorize_url": f"${{{sprefix}_AUTHORIZE_URL}}",
                "token_url": f"${{{sprefix}_TOKEN_URL}}",
                "scope_delimiter": "comma",
                "client_id": f"${{{sprefix}_CLIENT_ID}}",
                "client_secret": f"${{{sprefix}_CLIENT_SECRET}}",
            }
            kind = "custom" if entry.get("isUserDefinedService") else "a Zoho default"
            result.notes.append(
                f"{link}: service '{service_name}' ({kind} service in Zoho) has no built-in "
                f"here; set {sprefix}_AUTHORIZE_URL, {sprefix}_TOKEN_URL, {sprefix}_CLIENT_ID "
                f"and {sprefix}_CLIENT_SECRET, or edit services.{service}"
            )
    connection["service"] = service
    spec = builtins.get(service)
    if spec is None or isinstance(spec, OAuth2Service):  # None: the OAuth 2.0 one made above
        if scopes:
            connection["scopes"] = list(scopes)
        if spec is not None:
            connection["client_id"] = f"${{{prefix}_CLIENT_ID}}"
            connection["client_secret"] = f"${{{prefix}_CLIENT_SECRET}}"
        if spec is not None and spec.data_centres:
            connection["data_centre"] = spec.default_data_centre or "us"
    if entry.get("userAccess") is True:
        connection["per_user"] = True
    result.connections[link] = connection


def import_manifest(
    data: Mapping[str, Any] | str | Path, *, source: str = "plugin-manifest.json"
) -> ManifestImport:
    """Read ``zohoAuthorisation`` and ``connectors`` of a manifest (mapping, JSON text or path)."""
    if isinstance(data, Path):
        source = str(data)
        try:
            data = data.read_text(encoding="utf-8")
        except OSError as exc:
            raise ManifestError(source, [f"cannot be read: {exc.strerror}"]) from None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ManifestError(source, [f"is not JSON: {exc.msg} at line {exc.lineno}"]) from None
    if not isinstance(data, Mapping):
        raise ManifestError(source, ["must be a JSON object"])
    result = ManifestImport()
    problems: list[str] = []
    zoho = data.get("zohoAuthorisation")
    if zoho not in (None, {}):
        _connection(result, zoho, "zohoAuthorisation", problems, zoho=True)
    connectors = data.get("connectors") or []
    if not isinstance(connectors, list):
        problems.append("connectors must be a list")
        connectors = []
    for index, entry in enumerate(connectors):
        _connection(result, entry, f"connectors[{index}]", problems, zoho=False)
    if problems:
        raise ManifestError(source, problems)
    if not result.connections:
        result.notes.append("the manifest declares no connections")
    return result


def _merged(imported: ManifestImport, path: Path) -> MergeReport:
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    return merge_entries(
        existing,
        imported.services,
        imported.connections,
        comment="imported from plugin-manifest.json",
    )


def merge_into_file(imported: ManifestImport, path: Path, *, write: bool) -> MergeReport:
    """Merge imported entries into a connections file (existing link names win).

    With ``write``, under the file's edit lock and replaced atomically (a new file gets
    mode 0600: it may come to hold credentials).
    """
    if not write:
        return _merged(imported, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path) as target:
        report = _merged(imported, target)
        write_atomically(target, report.text)
    return report
