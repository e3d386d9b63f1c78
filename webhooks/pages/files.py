"""Writing the pages' edits to ``connections.yml`` and into the running facade.

The name and scopes edit is a ruamel round trip that keeps the file's comments and layout;
it and the delete go through :func:`connections.yamlfile.edit_yaml_file`, which holds the
file's edit lock (across the web processes and their threads) and replaces the file
atomically. The facade of this process is then handed the edited record, so the pages show
the edit at once (the facade has no reload of its own).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from connections import Connections, ConnectionSpec
from connections.yamlfile import edit_yaml_file, remove_connection

__all__ = [
    "FileEditError",
    "adopt_connection",
    "forget_connection",
    "remove_declaration",
    "write_connection_edit",
]


class FileEditError(Exception):
    """The connections file could not be edited; the message says why and what to do."""


def write_connection_edit(
    path: Path | None, link_name: str, *, name: str, scopes: tuple[str, ...] | None
) -> None:
    """Set a connection's display name and (``scopes`` not None) its full scope list.

    Scopes only grow (the caller checked that), so an existing list is appended to in
    place, keeping its style; a connection that inherited its service's scopes gets a list.
    """
    if path is None or not path.exists():
        raise FileEditError(
            f"there is no connections file to write ({path or 'DESKWIRE_CONNECTIONS_FILE'}); "
            "edit the connection there instead"
        )

    def change(root: Any) -> bool:
        declared = root.get("connections") if isinstance(root, CommentedMap) else None
        node = declared.get(link_name) if isinstance(declared, CommentedMap) else None
        if not isinstance(node, CommentedMap):
            raise FileEditError(
                f"{path} no longer declares connection '{link_name}' (edited meanwhile?); "
                "reload the page"
            )
        node["name"] = name
        if scopes is not None:
            declared_scopes = node.get("scopes")
            if isinstance(declared_scopes, CommentedSeq):
                present = {str(item) for item in declared_scopes}
                declared_scopes.extend(s for s in scopes if s not in present)
            else:
                fresh = CommentedSeq(scopes)
                fresh.fa.set_flow_style()
                node["scopes"] = fresh
        return True

    try:
        edit_yaml_file(path, change)
    except YAMLError:
        raise FileEditError(
            f"{path} is no longer valid YAML (edited meanwhile?); fix it, then reload"
        ) from None
    except UnicodeDecodeError as exc:
        raise FileEditError(f"{path} cannot be read: {exc}") from None
    except OSError as exc:
        raise FileEditError(f"{path} cannot be edited: {exc.strerror or exc}") from None


def remove_declaration(path: Path | None, link_name: str) -> bool:
    """Remove a connection from the file; False when the file does not declare it."""
    if path is None or not path.exists():
        return False
    try:
        return remove_connection(path, link_name)
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        raise FileEditError(f"{path} cannot be rewritten: {exc}") from None


def adopt_connection(facade: Connections, spec: ConnectionSpec) -> None:
    """Let this process's facade use the edited record at once."""
    connections = dict(facade.config.connections)
    connections[spec.link_name] = spec
    facade.config = replace(facade.config, connections=MappingProxyType(connections))


def forget_connection(facade: Connections, link_name: str) -> None:
    """Drop a deleted connection from this process's facade."""
    connections = {k: v for k, v in facade.config.connections.items() if k != link_name}
    facade.config = replace(facade.config, connections=MappingProxyType(connections))
