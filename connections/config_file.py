"""Reading a connections file (and the built-in catalogue) into a :class:`ConnectionsConfig`.

Every problem of the file is collected, each at its file, line, column and key path, and
raised together as one :class:`ConnectionsConfigError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from configfiles import Node, YamlProblem, mapping_entries, parse_yaml
from connections.config import ConnectionsConfig, ConnectionSpec, ServiceSpec, parse_service
from connections.config_reader import Fields, FileReport
from connections.connection_entries import parse_connection
from connections.errors import ConfigIssue, ConnectionsConfigError

__all__ = ["builtin_services", "load_config", "parse_config"]


def _read_root(ctx: FileReport, text: str) -> Fields | None:
    """The top-level mapping of a file; ``None`` (and the reason reported) if there is none."""
    try:
        root = parse_yaml(text)
    except YamlProblem as exc:
        ctx.errors.append(ctx.located(exc.line, exc.column, "(yaml)", exc.message))
        return None
    if root is None:
        root = Node("map", (), 1, 1)
    if not root.is_map:
        ctx.errors.append(
            ctx.located(1, 1, "(file)", "must be a mapping with `services:` and `connections:`")
        )
        return None
    return Fields(ctx, root, ("(file)",), dict.fromkeys(("services", "connections", "version")))


def _section(ctx: FileReport, root: Fields | None, name: str) -> list[tuple[str, Node, Node]]:
    """The (link name, key node, value node) entries of ``services:`` or ``connections:``."""
    node = root.get(name) if root is not None else None
    if node is None:
        return []
    if not node.is_map:
        ctx.error(node, (name,), "must be a mapping keyed by link name")
        return []
    return mapping_entries(node, (name,), ctx)


_BUILTINS: Mapping[str, ServiceSpec] | None = None


def builtin_services() -> Mapping[str, ServiceSpec]:
    """The built-in service catalogue (``catalogue.yml`` inside this package)."""
    global _BUILTINS
    if _BUILTINS is None:
        text = resources.files("connections").joinpath("catalogue.yml").read_text("utf-8")
        ctx = FileReport("connections/catalogue.yml", {})
        root = _read_root(ctx, text)
        services: dict[str, ServiceSpec] = {}
        for key, key_node, node in _section(ctx, root, "services"):
            spec = parse_service(ctx, key, key_node, node, builtin=True)
            if spec is not None:
                services[spec.key] = spec
        if ctx.errors:  # pragma: no cover - a broken catalogue is a bug of ours
            raise ConnectionsConfigError(ctx.errors)
        _BUILTINS = MappingProxyType(services)
    return _BUILTINS


def parse_config(
    text: str, env: Mapping[str, str], *, source: str = "connections.yml", path: Path | None = None
) -> ConnectionsConfig:
    """Parse connections YAML text; raise :class:`ConnectionsConfigError` listing every problem."""
    ctx = FileReport(source, env)
    root = _read_root(ctx, text)
    if root is None:
        raise ConnectionsConfigError(ctx.errors)
    builtins = builtin_services()
    services: dict[str, ServiceSpec] = dict(builtins)
    for key, key_node, node in _section(ctx, root, "services"):
        if key in builtins:
            ctx.error(
                key_node,
                ("services", key),
                f"'{key}' is a built-in service; give the custom service another key",
            )
            continue
        spec = parse_service(ctx, key, key_node, node, builtin=False)
        if spec is not None:
            services[key] = spec
    connections: dict[str, ConnectionSpec] = {}
    for key, key_node, node in _section(ctx, root, "connections"):
        spec_c = parse_connection(ctx, key, key_node, node, services)
        if spec_c is not None:
            connections[key] = spec_c
    if ctx.errors:
        raise ConnectionsConfigError(ctx.errors)
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
