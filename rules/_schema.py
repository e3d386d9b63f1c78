"""The schema interpreter: kinds of values described as data, checked against YAML nodes.

A schema is a tree of *kinds* (:class:`Text`, :class:`Record`, :class:`ListOf`, …). Checking
a node against a kind returns the converted value, or :data:`INVALID` after reporting every
problem found (never only the first) with its file, line, column, rule id and key path.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from rules._errors import RuleError
from rules._templates import (
    TEMPLATE_ROOTS,
    TemplateCompileError,
    compile_template,
    has_template,
)
from rules._yaml import Node

PathPart = str | int
Path = tuple[PathPart, ...]


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


def did_you_mean(word: str, choices: Any) -> str:
    """`` — did you mean 'x'?`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def type_name(node: Node) -> str:
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


@dataclass
class Report:
    """Collects errors for one file; ``rule`` is the id of the rule being read."""

    file: str
    errors: list[RuleError] = field(default_factory=list)
    rule: str | None = None
    # Inside an action: ids of the earlier steps of the rule, which templates may read.
    step_ids: tuple[str, ...] | None = None

    def error(
        self, node: Node | None, path: Path, message: str, *, at_key: bool = False
    ) -> _Invalid:
        """Record a problem at ``node`` (``at_key``: at the key holding it, see Node.entry)."""
        if node is None:
            line, column = 0, 0
        else:
            line, column = node.entry if at_key else (node.line, node.column)
        self.errors.append(
            RuleError(self.file, line, column, self.rule, format_path(path), message)
        )
        return INVALID


class Kind(ABC):
    """A kind of value; ``check`` converts a node or reports why it cannot."""

    expected: str = "a value"

    @abstractmethod
    def check(self, node: Node, path: Path, report: Report) -> Any:
        """The converted value, or ``INVALID`` after reporting the problem."""

    def _wrong(self, node: Node, path: Path, report: Report) -> _Invalid:
        return report.error(node, path, f"expected {self.expected}, got {type_name(node)}")


@dataclass(frozen=True)
class Text(Kind):
    pattern: str | None = None
    hint: str = ""
    expected: str = "text"

    def check(self, node: Node, path: Path, report: Report) -> Any:
        if not node.is_scalar or not isinstance(node.value, str):
            return self._wrong(node, path, report)
        if self.pattern is not None and not re.fullmatch(self.pattern, node.value):
            return report.error(node, path, f"{node.value!r} is not valid: {self.hint}")
        return node.value


@dataclass(frozen=True)
class Integer(Kind):
    expected: str = "a whole number"
    minimum: int | None = None
    maximum: int | None = None

    def check(self, node: Node, path: Path, report: Report) -> Any:
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
    expected: str = "a number"

    def check(self, node: Node, path: Path, report: Report) -> Any:
        value = node.value
        ok = node.is_scalar and isinstance(value, int | float) and not isinstance(value, bool)
        return value if ok else self._wrong(node, path, report)


@dataclass(frozen=True)
class Boolean(Kind):
    expected: str = "true or false"

    def check(self, node: Node, path: Path, report: Report) -> Any:
        ok = node.is_scalar and isinstance(node.value, bool)
        return node.value if ok else self._wrong(node, path, report)


@dataclass(frozen=True)
class Choice(Kind):
    choices: tuple[str, ...] = ()
    what: str = "value"

    @property
    def expected(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(self.choices)

    def check(self, node: Node, path: Path, report: Report) -> Any:
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
    item: Kind = field(default_factory=Kind)
    min_items: int = 0
    expected: str = "a list"

    def check(self, node: Node, path: Path, report: Report) -> Any:
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

    def check(self, node: Node, path: Path, report: Report) -> Any:
        if node.is_seq:
            return ListOf(self.item, min_items=1).check(node, path, report)
        value = self.item.check(node, path, report)
        return INVALID if value is INVALID else (value,)


@dataclass(frozen=True)
class AnyData(Kind):
    """Any YAML value, as plain data."""

    def check(self, node: Node, path: Path, report: Report) -> Any:
        return node.plain()


@dataclass(frozen=True)
class Raw(Kind):
    """The node itself, read later by code that needs its position (e.g. each action)."""

    def check(self, node: Node, path: Path, report: Report) -> Any:
        return node


@dataclass(frozen=True)
class Custom(Kind):
    """A value read by a function (used for conditions, whose keys are field paths)."""

    read: Callable[[Node, Path, Report], Any] = lambda node, path, report: node.plain()
    expected: str = "a value"

    def check(self, node: Node, path: Path, report: Report) -> Any:
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
    """A mapping with a fixed set of keys; unknown keys are errors with a "did you mean"."""

    fields: Mapping[str, Field] = field(default_factory=dict)
    what: str = "key"
    expected: str = "a mapping"

    def check(self, node: Node, path: Path, report: Report) -> Any:
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


def mapping_entries(node: Node, path: Path, report: Report) -> list[tuple[str, Node, Node]]:
    """The (key, key node, value node) entries of a mapping with text keys, reporting others."""
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


@dataclass(frozen=True)
class Templated(Kind):
    """A template string (compiled now), or else a value of the ``inner`` kind."""

    inner: Kind = field(default_factory=AnyData)
    native_only: bool = False

    @property
    def expected(self) -> str:  # type: ignore[override]
        return f"{self.inner.expected} or a template"

    def check(self, node: Node, path: Path, report: Report) -> Any:
        if node.is_scalar and isinstance(node.value, str) and has_template(node.value):
            compiled = compile_at(node, path, report)
            if compiled is INVALID:
                return INVALID
            if self.native_only and not compiled.native:
                return report.error(
                    node,
                    path,
                    'must be exactly one {{ expression }}, e.g. "{{ steps.page.status == 202 }}"',
                )
            return compiled
        scratch = Report(report.file, rule=report.rule, step_ids=report.step_ids)
        value = self.inner.check(node, path, scratch)
        for error in scratch.errors:
            message = error.message
            if message.startswith("expected ") and ", got " in message:
                wanted, got = message.removeprefix("expected ").split(", got ", 1)
                message = f"expected {wanted} or a {{{{ template }}}}, got {got}"
            report.errors.append(dataclasses.replace(error, message=message))
        return value


@dataclass(frozen=True)
class TemplateTree(Kind):
    """Any data; every string inside it that holds Jinja markup is compiled as a template.

    ``mapping_only``: the value itself must be a mapping (or one template that renders one).
    """

    mapping_only: bool = False
    expected: str = "a mapping or a template"

    def check(self, node: Node, path: Path, report: Report) -> Any:
        if self.mapping_only and not node.is_map:
            if not (isinstance(node.value, str) and has_template(node.value)):
                return self._wrong(node, path, report)
            return self._nested(node, path, report)
        return self._nested(node, path, report)

    def _nested(self, node: Node, path: Path, report: Report) -> Any:
        if node.is_map:
            result: dict[str, Any] = {}
            for key, _key_node, value_node in mapping_entries(node, path, report):
                result[key] = self._nested(value_node, (*path, key), report)
            return INVALID if any(v is INVALID for v in result.values()) else result
        if node.is_seq:
            items = [self._nested(child, (*path, i), report) for i, child in enumerate(node.value)]
            return INVALID if any(v is INVALID for v in items) else tuple(items)
        if isinstance(node.value, str) and has_template(node.value):
            return compile_at(node, path, report)
        return node.value


STEP_OUTPUTS = ("status", "json", "text", "headers")


def compile_at(node: Node, path: Path, report: Report) -> Any:
    """Compile a template from a scalar node, reporting a syntax error at its position.

    Also checks the variables it reads: only the context roots, and ``steps.<id>`` only for
    earlier steps of the same rule.
    """
    try:
        compiled = compile_template(str(node.value))
    except TemplateCompileError as exc:
        where = f" (template line {exc.line})" if exc.line and "\n" in str(node.value) else ""
        return report.error(node, path, f"{exc.message}{where}")
    problems = [
        f"unknown variable {root!r}{did_you_mean(root, TEMPLATE_ROOTS)} (templates "
        f"can use {', '.join(TEMPLATE_ROOTS)})"
        for root in sorted(compiled.roots)
        if root not in TEMPLATE_ROOTS
    ]
    for chain in compiled.references:
        if chain[0] != "steps" or len(chain) < 2:
            continue
        earlier = report.step_ids or ()
        if chain[1] not in earlier:
            listed = ", ".join(earlier) if earlier else "none"
            problems.append(
                f"'steps.{chain[1]}' is not an earlier step of this rule "
                f"(earlier steps: {listed}){did_you_mean(chain[1], earlier)}"
            )
        elif len(chain) > 2 and chain[2] not in STEP_OUTPUTS:
            problems.append(
                f"'steps.{chain[1]}.{chain[2]}' is not a step output"
                f"{did_you_mean(chain[2], STEP_OUTPUTS)} (outputs: "
                f"{', '.join(STEP_OUTPUTS)})"
            )
    for problem in dict.fromkeys(problems):
        report.error(node, path, problem)
    return INVALID if problems else compiled
