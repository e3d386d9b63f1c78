"""Read YAML 1.2 into a small tree of nodes that remember their line and column.

The one YAML reader of deskwire's configuration files (rules and connections).

ruamel.yaml composes the document (YAML 1.2: ``on`` stays a string, ``yes`` is not a
boolean); scalars are then built by its safe constructor. Every node keeps its 1-based
position so each error can point at the exact key or value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import marshal
import sys
from dataclasses import dataclass
from typing import Any, Protocol

from ruamel.yaml import YAML
from ruamel.yaml import __version__ as ruamel_version
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
from ruamel.yaml.nodes import Node as RawNode

_STR = "tag:yaml.org,2002:str"

# Aliases can expand a small file into a huge tree ("billion laughs"); refuse past this.
MAX_NODES = 200_000


@dataclass(frozen=True, slots=True)
class Node:
    """A YAML value with its position: a mapping, a sequence or a scalar.

    ``line``/``column`` are where the value starts; a value left empty (``key:`` with nothing
    after it) is placed at its key, since there is nothing else to point at. ``key_line``/
    ``key_column`` are where the key holding this value starts (0 for the document and for
    list items): a missing required key is reported there, at the key of its mapping.
    """

    kind: str  # "map" | "seq" | "scalar"
    value: Any  # map: tuple[tuple[Node, Node], ...]; seq: tuple[Node, ...]; scalar: the value
    line: int
    column: int
    key_line: int = 0
    key_column: int = 0

    @property
    def entry(self) -> tuple[int, int]:
        """Where the entry holding this value starts: its key, or the value itself."""
        if self.key_line:
            return self.key_line, self.key_column
        return self.line, self.column

    @property
    def is_map(self) -> bool:
        return self.kind == "map"

    @property
    def is_seq(self) -> bool:
        return self.kind == "seq"

    @property
    def is_scalar(self) -> bool:
        return self.kind == "scalar"

    def get(self, key: str) -> Node | None:
        """In a mapping: the value of ``key`` (the first one written), else ``None``."""
        if self.kind == "map":
            for key_node, value in self.value:
                if key_node.value == key and key_node.is_scalar:
                    found: Node = value
                    return found
        return None

    def plain(self) -> Any:
        """The value as plain Python data (dict, list, str, int, float, bool, None)."""
        if self.kind == "map":
            return {
                key.value if key.is_scalar else str(key.plain()): val.plain()
                for key, val in self.value
            }
        if self.kind == "seq":
            return [item.plain() for item in self.value]
        return self.value


class YamlProblem(Exception):
    """The text is not YAML we can use; carries a 1-based position."""

    def __init__(self, message: str, line: int, column: int) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(message)


class ParseStore(Protocol):
    """Where parsed documents may be kept between processes (the caller decides where).

    Keys are digests of the text; values are opaque bytes from this module. A store may
    lose or refuse anything: a miss only means parsing again.
    """

    def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""

    def put(self, key: str, data: bytes) -> None:
        """Keep ``data`` under ``key`` (best effort)."""


_POSITION_FIELDS = tuple(
    f.name for f in dataclasses.fields(Node) if f.name not in ("kind", "value")
)
# Part of every key: an entry made by another encoding, Node, parser or Python is never read.
_FORMAT = (
    f"deskwire-yaml-tree-2:{','.join(_POSITION_FIELDS)}:{ruamel_version}:"
    f"{sys.version_info[0]}.{sys.version_info[1]}"
)


def parse_yaml_cached(text: str, store: ParseStore | None) -> Node | None:
    """:func:`parse_yaml`, reusing a tree ``store`` kept for exactly this text.

    The tree (values, lines and columns) is the one parsing gives, so every error found
    in it later points where it would have. Text that does not parse is never stored.
    """
    if store is None:
        return parse_yaml(text)
    key = hashlib.sha256(f"{_FORMAT}\0{text}".encode()).hexdigest()
    data = store.get(key)
    if data is not None:
        tree = _decode(data)
        if tree is not _MISSING:
            return tree  # type: ignore[return-value]
    node = parse_yaml(text)
    store.put(key, _encode(node))
    return node


_MISSING = object()


def _encode(node: Node | None) -> bytes:
    payload = marshal.dumps(_flatten(node) if node is not None else None)
    return hashlib.sha256(payload).digest() + payload


def _flatten(node: Node) -> tuple[Any, ...]:
    # kind, value, then every other field of Node in order (positions), so a field added to
    # Node is kept too (and _FORMAT, which names the fields, changes with it).
    if node.kind == "map":
        value: Any = tuple((_flatten(k), _flatten(v)) for k, v in node.value)
    elif node.kind == "seq":
        value = tuple(_flatten(item) for item in node.value)
    else:
        value = node.value
    return (node.kind, value, *(getattr(node, name) for name in _POSITION_FIELDS))


def _decode(data: bytes) -> Node | object | None:
    """The tree in ``data``, or ``_MISSING`` if it is damaged (then the text is parsed)."""
    digest, payload = data[:32], data[32:]
    if len(data) < 32 or hashlib.sha256(payload).digest() != digest:
        return _MISSING
    try:
        flat = marshal.loads(payload)  # noqa: S302 - our own entry, checked by its digest
        return None if flat is None else _build(flat)
    except (ValueError, TypeError, EOFError, IndexError):
        return _MISSING


def _build(flat: tuple[Any, ...]) -> Node:
    kind, value, *positions = flat
    if len(positions) != len(_POSITION_FIELDS):
        raise ValueError("entry made for another Node")
    if kind == "map":
        value = tuple((_build(k), _build(v)) for k, v in value)
    elif kind == "seq":
        value = tuple(_build(item) for item in value)
    elif kind != "scalar":
        raise ValueError(f"unknown node kind {kind!r}")
    return Node(kind, value, *positions)


def parse_yaml(text: str) -> Node | None:
    """Parse one YAML document; ``None`` for an empty document. Raises :class:`YamlProblem`."""
    yaml = YAML(typ="safe", pure=True)
    try:
        raw = yaml.compose(text)
    except Exception as exc:  # noqa: BLE001 - ruamel raises many types; all mean "bad YAML"
        raise _problem(exc) from None
    if raw is None:
        return None
    builder = _Builder(yaml)
    return builder.build(raw)


def _problem(exc: Exception) -> YamlProblem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    started = getattr(exc, "context_mark", None)
    if context and started is not None and started is not mark:
        # e.g. an unclosed [ is noticed where the file ends; say where it was opened.
        context = f"{context} (from line {started.line + 1}, column {started.column + 1})"
    parts = [str(part) for part in (context, problem) if part]
    message = "; ".join(parts) if parts else str(exc).splitlines()[0] if str(exc) else repr(exc)
    line = getattr(mark, "line", -1) + 1
    column = getattr(mark, "column", -1) + 1
    return YamlProblem(f"invalid YAML: {message}", max(line, 1), max(column, 1))


class _Builder:
    def __init__(self, yaml: YAML) -> None:
        self._yaml = yaml
        self._memo: dict[int, Node] = {}
        self._active: set[int] = set()
        self._size: dict[int, int] = {}

    def build(self, raw: RawNode) -> Node:
        key = id(raw)
        known = self._memo.get(key)
        if known is not None:
            return known
        line, column = raw.start_mark.line + 1, raw.start_mark.column + 1
        if key in self._active:
            raise YamlProblem("an alias refers to itself (recursive structure)", line, column)
        self._active.add(key)
        try:
            node, size = self._build(raw, line, column)
        finally:
            self._active.discard(key)
        # The size once aliases are expanded: what any walk over the tree will visit.
        if size > MAX_NODES:
            raise YamlProblem("file too large once aliases are expanded", line, column)
        self._size[key] = size
        self._memo[key] = node
        return node

    def _build(self, raw: RawNode, line: int, column: int) -> tuple[Node, int]:
        sizes = self._size
        if isinstance(raw, MappingNode):
            if any(k.tag == "tag:yaml.org,2002:merge" for k, _ in raw.value):
                raise YamlProblem("merge keys (<<) are not supported", line, column)
            pairs = tuple(self._entry(k, v) for k, v in raw.value)
            size = 1 + sum(sizes[id(k)] + sizes[id(v)] for k, v in raw.value)
            return Node("map", pairs, line, column), size
        if isinstance(raw, SequenceNode):
            items = tuple(self.build(item) for item in raw.value)
            return Node("seq", items, line, column), 1 + sum(sizes[id(i)] for i in raw.value)
        if isinstance(raw, ScalarNode):
            return Node("scalar", self._scalar(raw, line, column), line, column), 1
        raise YamlProblem(f"unsupported YAML node {type(raw).__name__}", line, column)

    def _entry(self, raw_key: RawNode, raw_value: RawNode) -> tuple[Node, Node]:
        key, value = self.build(raw_key), self.build(raw_value)
        # An empty value is zero characters wide and positioned at whatever follows it
        # (often the next line); the key is where the reader has to look instead.
        empty = raw_value.start_mark.index == raw_value.end_mark.index
        line, column = (key.line, key.column) if empty else (value.line, value.column)
        placed = dataclasses.replace(
            value, line=line, column=column, key_line=key.line, key_column=key.column
        )
        return key, placed

    def _scalar(self, raw: ScalarNode, line: int, column: int) -> Any:
        tag = raw.tag
        if tag == _STR:
            return raw.value  # what the safe constructor returns for text, without its bookkeeping
        if tag == "tag:yaml.org,2002:timestamp":
            return str(raw.value)  # keep dates as the text written; rules compare strings
        try:
            value = self._yaml.constructor.construct_object(raw, deep=True)
        except Exception as exc:  # noqa: BLE001 - unknown tags, bad numbers, …
            raise YamlProblem(f"cannot read value: {_problem(exc).message}", line, column) from None
        if isinstance(value, dt.date | dt.datetime):
            return str(raw.value)
        if value is not None and not isinstance(value, str | int | float | bool):
            raise YamlProblem(f"unsupported value of type {type(value).__name__}", line, column)
        return value
