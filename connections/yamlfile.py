"""Edits of ``connections.yml`` that keep its comments and layout (ruamel round-trip).

Every edit of the file reads, changes and writes it under its edit lock, replacing it
atomically (:mod:`deskwire.file_writes`): the web processes and the CLI never lose each
other's edits, and a reader never sees half a file.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from deskwire.file_writes import locked, write_atomically

__all__ = ["MergeReport", "dump_yaml", "edit_yaml_file", "merge_entries", "remove_connection"]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 100
    return yaml


def _to_commented(value: Any) -> Any:
    if isinstance(value, Mapping):
        node = CommentedMap()
        for key, item in value.items():
            node[key] = _to_commented(item)
        return node
    if isinstance(value, list | tuple):
        return [_to_commented(item) for item in value]
    return value


def dump_yaml(document: Mapping[str, Any]) -> str:
    """YAML text of a plain mapping."""
    stream = io.StringIO()
    _yaml().dump(_to_commented(document), stream)
    return stream.getvalue()


@dataclass
class MergeReport:
    """What a merge added and what it left alone because the key already existed."""

    added_services: list[str] = field(default_factory=list)
    added_connections: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    text: str = ""


def merge_entries(
    existing: str,
    services: Mapping[str, Mapping[str, Any]],
    connections: Mapping[str, Mapping[str, Any]],
    *,
    comment: str | None = None,
) -> MergeReport:
    """Add services and connections to a connections file's text; existing keys win."""
    yaml = _yaml()
    root = yaml.load(existing) if existing.strip() else None
    if root is None:
        root = CommentedMap()
    if not isinstance(root, CommentedMap):
        raise ValueError("the connections file is not a mapping")
    report = MergeReport()
    for section, entries, added in (
        ("services", services, report.added_services),
        ("connections", connections, report.added_connections),
    ):
        if not entries:
            continue
        target = root.get(section)
        if target is None:
            target = CommentedMap()
            root[section] = target
        for key, entry in entries.items():
            if key in target:
                report.skipped.append(f"{section}.{key}")
                continue
            target[key] = _to_commented(entry)
            added.append(key)
            if comment:
                target.yaml_set_comment_before_after_key(key, before=comment, indent=2)
    stream = io.StringIO()
    yaml.dump(root, stream)
    report.text = stream.getvalue()
    return report


def edit_yaml_file(path: Path, change: Callable[[Any], bool]) -> bool:
    """Load ``path`` (round-trip), let ``change`` edit the document, write it if it did.

    ``change`` gets the loaded document (None for an empty file) and returns whether it
    changed it; it may raise to abandon the edit. The whole read-change-write holds the
    file's edit lock. Returns what ``change`` returned.
    """
    with locked(path) as target:
        yaml = _yaml()
        root = yaml.load(target.read_text(encoding="utf-8"))
        if not change(root):
            return False
        stream = io.StringIO()
        yaml.dump(root, stream)
        write_atomically(target, stream.getvalue())
    return True


def remove_connection(path: Path, link_name: str) -> bool:
    """Remove a connection's declaration from the file; False if it was not there."""

    def remove(root: Any) -> bool:
        declared = root.get("connections") if isinstance(root, CommentedMap) else None
        if not isinstance(declared, CommentedMap) or link_name not in declared:
            return False
        del declared[link_name]
        return True

    return edit_yaml_file(path, remove)
