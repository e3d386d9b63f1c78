"""`when` conditions: read from YAML into a frozen tree, evaluated against a context.

Evaluation returns whether the condition holds and, when it does not, the first failing
criterion with the value actually seen — the sentence `rules test` and `explain` print.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from configfiles import INVALID, Node, Path, did_you_mean, format_path, mapping_entries
from rules._operators import OPERATORS, OperandError, Operator, Probe, as_time
from rules._schema import Report

FIELD_ROOTS = ("event", "request", "payload", "previous")
COMBINATORS = ("all", "any", "not")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*")
_MISSING = object()


def show(value: Any, limit: int = 120) -> str:
    """A short, YAML-flavoured rendering of a value for messages."""
    if value is _MISSING:
        return "(missing)"
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, int | float):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, default=str, sort_keys=True)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def resolve(context: Mapping[str, Any], segments: tuple[str, ...]) -> tuple[bool, Any]:
    """Follow a dotted path into the context: (present, value). Digits index lists."""
    value: Any = context
    for segment in segments:
        if isinstance(value, Mapping):
            if segment not in value:
                return False, None
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit():
            index = int(segment)
            if index >= len(value):
                return False, None
            value = value[index]
        else:
            return False, None
    return True, value


def clock(context: Mapping[str, Any]) -> float:
    """The evaluation time: ``context["now"]`` when given (tests pin it), else the real clock."""
    pinned = context.get("now")
    moment = as_time(pinned) if pinned is not None else None
    return moment if moment is not None else time.time()


@dataclass(frozen=True, slots=True)
class Outcome:
    matched: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Criterion:
    """``field operator operand``: one test of one field."""

    label: str
    field: str
    segments: tuple[str, ...]
    operator: Operator = dataclass_field(repr=False)
    operand: Any = dataclass_field(repr=False)
    written: Any = None

    def describe(self) -> str:
        return f"{self.field} {self.operator.name} {show(self.written)}"

    def probe(self, context: Mapping[str, Any], now: float) -> Probe:
        present, value = resolve(context, self.segments)
        if not self.operator.uses_previous:
            return Probe(present, value, now=now)
        previous = context.get("previous")
        if not isinstance(previous, Mapping):
            return Probe(present, value, False, now=now)
        before_present, before = resolve(previous, self.segments[1:])
        return Probe(present, value, True, before_present, before, now)

    def evaluate(self, context: Mapping[str, Any], now: float) -> Outcome:
        probe = self.probe(context, now)
        if self.operator.test(probe, self.operand):
            return Outcome(True)
        return Outcome(False, f"{self.label}: {self.describe()} — actual: {self._actual(probe)}")

    def _actual(self, probe: Probe) -> str:
        actual = show(probe.value if probe.present else _MISSING)
        if not self.operator.uses_previous:
            return actual
        if not probe.previous_known:
            return f"{actual} (no previous state)"
        before = show(probe.previous if probe.previous_present else _MISSING)
        return f"{actual} (previous: {before})"


@dataclass(frozen=True, slots=True)
class AllOf:
    label: str
    items: tuple[Condition, ...]

    def describe(self) -> str:
        return f"all of {len(self.items)} conditions"

    def evaluate(self, context: Mapping[str, Any], now: float) -> Outcome:
        for item in self.items:
            outcome = item.evaluate(context, now)
            if not outcome.matched:
                return outcome
        return Outcome(True)


@dataclass(frozen=True, slots=True)
class AnyOf:
    label: str
    items: tuple[Condition, ...]

    def describe(self) -> str:
        return f"any of {len(self.items)} conditions"

    def evaluate(self, context: Mapping[str, Any], now: float) -> Outcome:
        reasons: list[str] = []
        for item in self.items:
            outcome = item.evaluate(context, now)
            if outcome.matched:
                return Outcome(True)
            reasons.append(outcome.reason or item.describe())
        return Outcome(False, f"{self.label}: none matched — " + "; ".join(reasons))


@dataclass(frozen=True, slots=True)
class NotOf:
    label: str
    item: Condition

    def describe(self) -> str:
        return f"not ({self.item.describe()})"

    def evaluate(self, context: Mapping[str, Any], now: float) -> Outcome:
        if not self.item.evaluate(context, now).matched:
            return Outcome(True)
        detail = f"{self.item.describe()} matched"
        if isinstance(self.item, Criterion):
            present, value = resolve(context, self.item.segments)
            detail += f" (actual: {show(value if present else _MISSING)})"
        return Outcome(False, f"{self.label}: must not match, but {detail}")


Condition = Criterion | AllOf | AnyOf | NotOf


# --- reading conditions from YAML ----------------------------------------------------------


def _label(path: Path) -> str:
    """The key path from `when` on (what users see in reasons), e.g. ``when.all[0]``."""
    start = path.index("when") if "when" in path else 0
    return format_path(path[start:])


def read_condition(node: Node, path: Path, report: Report) -> Any:
    """Read a `when` value: a mapping (several keys = all of them) or a list (= all)."""
    if node.is_seq:
        return _read_list(node, path, report, "all")
    if not node.is_map:
        return report.error(
            node,
            path,
            "expected a condition mapping, e.g. {request.priority.name: High} or {all: [...]}",
        )
    if not node.value:
        return report.error(node, path, "empty condition; remove `when` to match always")
    label = _label(path)
    parts: list[Any] = []
    for key, key_node, value_node in mapping_entries(node, path, report):
        here = (*path, key)
        if key in ("all", "any"):
            if not value_node.is_seq or not value_node.value:
                parts.append(
                    report.error(value_node, here, f"`{key}` needs a non-empty list of conditions")
                )
            else:
                parts.append(_read_list(value_node, here, report, key))
        elif key == "not":
            inner = read_condition(value_node, here, report)
            parts.append(inner if inner is INVALID else NotOf(_label(here), inner))
        else:
            parts.append(_read_field(key, key_node, value_node, label, here, report))
    if any(part is INVALID for part in parts) or not parts:
        return INVALID
    return parts[0] if len(parts) == 1 else AllOf(label, tuple(parts))


def _read_list(node: Node, path: Path, report: Report, combinator: str) -> Any:
    items = [read_condition(child, (*path, i), report) for i, child in enumerate(node.value)]
    if any(item is INVALID for item in items):
        return INVALID
    label = _label(path)
    return AllOf(label, tuple(items)) if combinator == "all" else AnyOf(label, tuple(items))


def _read_field(
    key: str, key_node: Node, value: Node, label: str, path: Path, report: Report
) -> Any:
    root = key.split(".", 1)[0]
    if not _FIELD.fullmatch(key) or root not in FIELD_ROOTS:
        rest = key[len(root) :]
        options = [*COMBINATORS, *FIELD_ROOTS]
        close = did_you_mean(root, options)
        if close and rest:
            close = close.replace("'?", f"{rest}'?")
        return report.error(
            key_node,
            path,
            f"unknown key or field {key!r}{close} (a condition "
            "key is all, any, not, or a field path starting with "
            + ", ".join(f"{r}." for r in FIELD_ROOTS)
            + ")",
        )
    segments = tuple(key.split("."))
    if len(segments) < 2 and root != "previous":
        return report.error(
            key_node, path, f"{key!r} is a whole object; name a field inside it, e.g. {root}.id"
        )
    if not value.is_map:
        return _criterion(OPERATORS["equals"], key, segments, value, label, path, report)
    if not value.value:
        return report.error(value, path, "no operator given, e.g. {equals: High}")
    parts: list[Any] = []
    for name, name_node, operand_node in mapping_entries(value, path, report):
        spec = OPERATORS.get(name)
        if spec is None:
            hint = did_you_mean(name, OPERATORS)
            parts.append(report.error(name_node, (*path, name), f"unknown operator {name!r}{hint}"))
            continue
        parts.append(_criterion(spec, key, segments, operand_node, label, (*path, name), report))
    if any(part is INVALID for part in parts) or not parts:
        return INVALID
    return parts[0] if len(parts) == 1 else AllOf(label, tuple(parts))


def _criterion(
    spec: Operator,
    key: str,
    segments: tuple[str, ...],
    operand: Node,
    label: str,
    path: Path,
    report: Report,
) -> Any:
    if spec.uses_previous and segments[0] != "request":
        return report.error(
            operand,
            path,
            f"`{spec.name}` compares with the previous state of "
            "the request, so the field must start with request.",
        )
    written = operand.plain()
    try:
        prepared = spec.prepare(written)
    except OperandError as exc:
        return report.error(operand, path, f"{spec.name}: {exc}")
    return Criterion(label, key, segments, spec, prepared, written)
