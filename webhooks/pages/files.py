"""Writing the pages' edits to ``connections.yml`` and into the running facade.

:mod:`connections.yamlfile` offers :func:`~connections.yamlfile.remove_connection` (used for
delete) but no writer for an edited connection, so the name and scopes edit is done here
with a ruamel round trip that keeps the file's comments and layout, written atomically.
The facade of this process is then handed the edited record, so the pages show the edit
at once (the facade has no reload of its own).
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from connections import Connections, ConnectionSpec
from connections.yamlfile import remove_connection

__all__ = [
    "FileEditError",
    "adopt_connection",
    "forget_connection",
    "remove_declaration",
    "write_connection_edit",
]

_FILE_LOCK = threading.Lock()


class FileEditError(Exception):
    """The connections file could not be edited; the message says why and what to do."""


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 100
    return yaml


def _write_atomically(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
    with _FILE_LOCK:
        yaml = _yaml()
        try:
            root = yaml.load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise FileEditError(f"{path} cannot be read: {exc}") from None
        except YAMLError:
            raise FileEditError(
                f"{path} is no longer valid YAML (edited meanwhile?); fix it, then reload"
            ) from None
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
        stream = io.StringIO()
        yaml.dump(root, stream)
        try:
            _write_atomically(path, stream.getvalue())
        except OSError as exc:
            raise FileEditError(f"{path} cannot be written: {exc.strerror or exc}") from None


def remove_declaration(path: Path | None, link_name: str) -> bool:
    """Remove a connection from the file; False when the file does not declare it."""
    if path is None or not path.exists():
        return False
    with _FILE_LOCK:
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
