"""Schemas as data: kinds of values checked against YAML nodes, every error reported.

A schema is a tree of *kinds* (:class:`Text`, :class:`Record`, :class:`ListOf`, …). Checking
a node against a kind returns the converted value, or :data:`INVALID` after reporting every
problem found (never only the first) to a :class:`Report`, with its line, column and key
path. What an error record looks like is the report's business (:meth:`Report.located`), so
each kind of file keeps its own error type.
"""

from __future__ import annotations

import difflib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from configfiles.yamltree import Node

PathPart = str | int
Path = tuple[PathPart, ...]
E = TypeVar("E")


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Final = _Invalid()


def format_path(path: Path) -> str:
    """``("rules", 2, "when")`` → ``rules[2].when``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def type_name(node: Node) -> str:
    """How a value reads in a message: ``a mapping``, ``the number 5``, ``the text 'x'``."""
    if node.is_map:
        return "a mapping"
    if node.is_seq:
        return "a list"
    value = node.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"the text {value!r}"


class Report(ABC, Generic[E]):
    """Collects the errors found in one file; subclasses say what an error record is."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[E] = []

    @abstractmethod
    def located(self, line: int, column: int, path: str, message: str) -> E:
        """The error record for ``message`` at ``line``/``column`` and key path ``path``."""

    def error(
        self, node: Node | None, path: Path, message: str, *, at_key: bool = False
    ) -> _Invalid:
        """Record a problem at ``node`` (``at_key``: at the key holding it, see Node.entry);
        no node: the whole file (line and column 0)."""
        if node is None:
            line, column = 0, 0
        else:
            line, column = node.entry if at_key else (node.line, node.column)
        self.errors.append(self.located(line, column, format_path(path), message))
        return INVALID


class Kind(ABC):
    """A kind of value; ``check`` converts a node or reports why it cannot."""

    expected: str = "a value"

    @abstractmethod
    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        """The converted value, or ``INVALID`` after reporting the problem."""

    def _wrong(self, node: Node, path: Path, report: Report[Any]) -> _Invalid:
        return report.error(node, path, f"expected {self.expected}, got {type_name(node)}")


@dataclass(frozen=True)
class Text(Kind):
    """Text, optionally matching ``pattern`` (``hint`` says what valid text looks like)."""

    pattern: str | None = None
    hint: str = ""
    expected: str = "text"

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        if not node.is_scalar or not isinstance(node.value, str):
            return self._wrong(node, path, report)
        if self.pattern is not None and not re.fullmatch(self.pattern, node.value):
            return report.error(node, path, f"{node.value!r} is not valid: {self.hint}")
        return node.value


@dataclass(frozen=True)
class Integer(Kind):
    """A whole number, optionally within ``minimum``/``maximum``."""

    expected: str = "a whole number"
    minimum: int | None = None
    maximum: int | None = None

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        ok = node.is_scalar and isinstance(node.value, int) and not isinstance(node.value, bool)
        if not ok:
            return self._wrong(node, path, report)
        low, high = self.minimum, self.maximum
        if (low is not None and node.value < low) or (high is not None and node.value > high):
            bounds = (
                f"from {low if low is not None else '…'} to {high if high is not None else '…'}"
            )
            return report.error(node, path, f"{node.value} is out of range: {bounds}")
        return node.value


@dataclass(frozen=True)
class Number(Kind):
    """A whole or decimal number."""

    expected: str = "a number"

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        value = node.value
        ok = node.is_scalar and isinstance(value, int | float) and not isinstance(value, bool)
        return value if ok else self._wrong(node, path, report)


@dataclass(frozen=True)
class Boolean(Kind):
    """``true`` or ``false`` (YAML 1.2: not ``yes``/``on``)."""

    expected: str = "true or false"

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        ok = node.is_scalar and isinstance(node.value, bool)
        return node.value if ok else self._wrong(node, path, report)


@dataclass(frozen=True)
class Choice(Kind):
    """One of a fixed set of words; ``what`` names them in errors (``unknown action 'x'``)."""

    choices: tuple[str, ...] = ()
    what: str = "value"

    @property
    def expected(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(self.choices)

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        if not node.is_scalar or not isinstance(node.value, str):
            return self._wrong(node, path, report)
        if node.value not in self.choices:
            hint = did_you_mean(node.value, self.choices)
            if len(self.choices) <= 12:
                hint += f" (allowed: {', '.join(self.choices)})"
            return report.error(node, path, f"unknown {self.what} {node.value!r}{hint}")
        return node.value


@dataclass(frozen=True)
class ListOf(Kind):
    """A list of items of one kind, with at least ``min_items``; returns a tuple."""

    item: Kind = field(default_factory=Kind)
    min_items: int = 0
    expected: str = "a list"

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        if not node.is_seq:
            return self._wrong(node, path, report)
        if len(node.value) < self.min_items:
            return report.error(node, path, f"needs at least {self.min_items} item(s)")
        values = [self.item.check(child, (*path, i), report) for i, child in enumerate(node.value)]
        return INVALID if any(v is INVALID for v in values) else tuple(values)


@dataclass(frozen=True)
class OneOrList(Kind):
    """A single value or a list of them; always returns a tuple."""

    item: Kind = field(default_factory=Kind)
    expected: str = "a value or a list"

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        if node.is_seq:
            return ListOf(self.item, min_items=1).check(node, path, report)
        value = self.item.check(node, path, report)
        return INVALID if value is INVALID else (value,)


@dataclass(frozen=True)
class AnyData(Kind):
    """Any YAML value, as plain data."""

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        return node.plain()


@dataclass(frozen=True)
class Raw(Kind):
    """The node itself, read later by code that needs its position (e.g. each action)."""

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        return node


@dataclass(frozen=True)
class Custom(Kind):
    """A value read by a function ``read(node, path, report)`` (e.g. rule conditions)."""

    read: Callable[[Node, Path, Any], Any] = lambda node, path, report: node.plain()
    expected: str = "a value"

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        return self.read(node, path, report)


@dataclass(frozen=True)
class Field:
    """One key of a :class:`Record`."""

    kind: Kind
    required: bool = False
    default: Any = None
    doc: str = ""


@dataclass(frozen=True)
class Record(Kind):
    """A mapping with a fixed set of keys; unknown keys are errors with a "did you mean".

    ``what`` names the keys in errors (``unknown rule key 'x'``, ``missing required …``).
    """

    fields: Mapping[str, Field] = field(default_factory=dict)
    what: str = "key"
    expected: str = "a mapping"

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        if not node.is_map:
            return self._wrong(node, path, report)
        values: dict[str, Any] = {}
        for key, key_node, value_node in mapping_entries(node, path, report):
            spec = self.fields.get(key)
            if spec is None:
                allowed = ", ".join(self.fields)
                hint = did_you_mean(key, self.fields)
                report.error(
                    key_node,
                    (*path, key),
                    f"unknown {self.what} {key!r}{hint} (allowed: {allowed})",
                )
                continue
            values[key] = spec.kind.check(value_node, (*path, key), report)
        for name, spec in self.fields.items():
            if name in values:
                continue
            if spec.required:
                values[name] = report.error(
                    node, path, f"missing required {self.what} {name!r}", at_key=True
                )
            else:
                values[name] = spec.default
        return values


def mapping_entries(node: Node, path: Path, report: Report[Any]) -> list[tuple[str, Node, Node]]:
    """The (key, key node, value node) entries of a mapping with text keys, reporting others
    (keys that are not text, and every repeat of a key, at the repeated key)."""
    entries: list[tuple[str, Node, Node]] = []
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = key_node.value if key_node.is_scalar else None
        if not isinstance(key, str):
            report.error(key_node, path, f"keys must be text, got {type_name(key_node)}")
            continue
        if key in seen:
            report.error(key_node, (*path, key), f"duplicate key {key!r}")
            continue
        seen.add(key)
        entries.append((key, key_node, value_node))
    return entries
