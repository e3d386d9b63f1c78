"""Regression test cases kept beside the rules: `*.case.yml` files.

A case gives a webhook body (inline ``event:`` or ``event_file:``) and what must happen::

    cases:
      - name: VIP outage pages on-call
        event: {event: request.created, request: {id: "7", subject: Outage, ...}}
        previous: {...}                 # optional; else the body's `previous`
        now: "2024-05-01T12:00:00Z"     # optional; pins the clock for older_than/newer_than
        expect:
          matched: [vip-outage-page]     # these rules run
          not_matched: [close-stale]     # these do not
          steps:                         # rendered arguments (only the ones listed)
            vip-outage-page:
              page: {url: https://events.pagerduty.com/v2/enqueue}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from configfiles import (
    INVALID,
    AnyData,
    Field,
    ListOf,
    Node,
    Raw,
    Record,
    Text,
    did_you_mean,
    format_path,
    in_file_order,
)
from rules._errors import RuleError
from rules._explain import Explanation, context_from_body, explain
from rules._loader import read_document
from rules._model import RuleSet
from rules._rule_format import CASE_SUFFIXES
from rules._schema import Report

EXPECT_SCHEMA = Record(
    {
        "matched": Field(ListOf(Text()), default=()),
        "not_matched": Field(ListOf(Text()), default=()),
        "steps": Field(AnyData(), default=None),
    },
    what="expect key",
)
CASE_SCHEMA = Record(
    {
        "name": Field(Text(), required=True),
        "event": Field(AnyData()),
        "event_file": Field(Text()),
        "previous": Field(AnyData()),
        "now": Field(AnyData()),
        "expect": Field(EXPECT_SCHEMA, required=True),
    },
    what="case key",
)
CASE_FILE_SCHEMA = Record(
    {"cases": Field(ListOf(Raw(), min_items=1), required=True)}, what="top-level key"
)


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one case; ``failures`` say what differed, one line each."""

    file: str
    line: int
    name: str
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "name": self.name,
            "ok": self.ok,
            "failures": list(self.failures),
        }


@dataclass(frozen=True, slots=True)
class CaseReport:
    """All case results, plus errors in case files themselves."""

    results: tuple[CaseResult, ...]
    errors: tuple[RuleError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors and all(result.ok for result in self.results)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape: ok, cases (file, line, name, ok, failures), errors."""
        return {
            "ok": self.ok,
            "cases": [r.to_dict() for r in self.results],
            "errors": [e.to_dict() for e in self.errors],
        }

    def to_text(self) -> str:
        lines = [str(error) for error in self.errors]
        for result in self.results:
            mark = "ok  " if result.ok else "FAIL"
            lines.append(f"{mark} {result.name}  ({result.file}:{result.line})")
            lines.extend(f"     {failure}" for failure in result.failures)
        passed = sum(result.ok for result in self.results)
        lines.append(
            f"{passed}/{len(self.results)} cases passed"
            + (f", {len(self.errors)} error(s) in case files" if self.errors else "")
        )
        return "\n".join(lines)


def case_files(directory: FsPath) -> list[FsPath]:
    """Every ``*.case.yml`` / ``*.case.yaml`` under the folder (not hidden), sorted."""
    found = [
        path
        for path in directory.rglob("*")
        if path.name.endswith(CASE_SUFFIXES)
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def run_cases(rule_set: RuleSet, directory: str | FsPath) -> CaseReport:
    """Run every case file under ``directory`` against the rule set."""
    results: list[CaseResult] = []
    errors: list[RuleError] = []
    root = FsPath(directory)
    files = case_files(root) if root.is_dir() else [root]
    for path in files:
        report = Report(str(path))
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.error(None, (), f"cannot read: {exc.strerror or exc}")
            errors.extend(report.errors)
            continue
        node = read_document(path, data, report, top="cases")
        if node is not None:
            top = CASE_FILE_SCHEMA.check(node, (), report)
            items = top.get("cases") if isinstance(top, dict) else None
            if isinstance(items, tuple):
                for index, item in enumerate(items):
                    result = _run_case(rule_set, path, item, ("cases", index), report)
                    if result is not None:
                        results.append(result)
        errors.extend(report.errors)
    return CaseReport(tuple(results), in_file_order(errors))


def _run_case(
    rule_set: RuleSet, path: FsPath, node: Any, where: tuple[str | int, ...], report: Report
) -> CaseResult | None:
    values = CASE_SCHEMA.check(node, where, report)
    if values is INVALID or any(v is INVALID for v in values.values()):
        return None
    body = values["event"]
    if values["event_file"] is not None:
        if body is not None:
            report.error(node, where, "give either `event` or `event_file`, not both")
            return None
        event_path = path.parent / values["event_file"]
        try:
            body = json.loads(event_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            report.error(
                _value_of(node, "event_file"),
                (*where, "event_file"),
                f"cannot read {event_path}: {exc}",
            )
            return None
    if not isinstance(body, Mapping):
        report.error(
            node, where, "needs `event` (a webhook body mapping) or `event_file`", at_key=True
        )
        return None
    context = context_from_body(body)
    if values["previous"] is not None:
        context["previous"] = values["previous"]
    if values["now"] is not None:
        context["now"] = values["now"]
    failures = _compare(rule_set, explain(rule_set, context), values["expect"])
    return CaseResult(str(path), node.line, values["name"], tuple(failures))


def _value_of(node: Node, key: str) -> Node:
    """The value node of ``key`` in a mapping node (the mapping itself if absent)."""
    for key_node, value_node in node.value:
        if key_node.value == key:
            found: Node = value_node
            return found
    return node


def _compare(rule_set: RuleSet, explanation: Explanation, expect: Mapping[str, Any]) -> list[str]:
    known = [rule.id for rule in rule_set.rules]
    by_id = {rule.id: rule for rule in explanation.rules}
    failures: list[str] = []

    def check_known(rule_id: str) -> bool:
        if rule_set.get(rule_id) is None:
            failures.append(f"unknown rule id {rule_id!r}{did_you_mean(rule_id, known)}")
            return False
        return True

    for rule_id in expect["matched"]:
        if not check_known(rule_id):
            continue
        seen = by_id.get(rule_id)
        if seen is None:
            failures.append(
                f"matched: expected {rule_id!r} to run, but it does not listen to "
                f"event type {explanation.event_type!r} (or is disabled)"
            )
        elif not seen.runs:
            failures.append(f"matched: expected {rule_id!r} to run, but {seen.reason}")
    for rule_id in expect["not_matched"]:
        if check_known(rule_id) and rule_id in by_id and by_id[rule_id].runs:
            failures.append(f"not_matched: expected {rule_id!r} not to run, but it matched")
    steps = expect["steps"]
    if steps is None:
        return failures
    if not isinstance(steps, Mapping):
        return [*failures, "expect.steps must be a mapping: {rule_id: {step_id: {arg: value}}}"]
    for rule_id, expected_steps in steps.items():
        if not check_known(str(rule_id)):
            continue
        seen = by_id.get(str(rule_id))
        if seen is None or not seen.matched:
            failures.append(f"steps.{rule_id}: the rule did not match, so it has no steps")
            continue
        actual_steps = {step.id: step for step in seen.steps}
        if not isinstance(expected_steps, Mapping):
            failures.append(f"steps.{rule_id}: expected a mapping of step id to arguments")
            continue
        for step_id, expected_args in expected_steps.items():
            step = actual_steps.get(str(step_id))
            if step is None:
                hint = did_you_mean(str(step_id), actual_steps)
                failures.append(f"steps.{rule_id}: no step {step_id!r}{hint}")
                continue
            if not isinstance(expected_args, Mapping):
                failures.append(f"steps.{rule_id}.{step_id}: expected a mapping of arguments")
                continue
            for name, value in expected_args.items():
                failures.extend(
                    diff(
                        value,
                        step.args.get(name, _ABSENT),
                        ("steps", str(rule_id), str(step_id), str(name)),
                    )
                )
    return failures


_ABSENT = object()


def diff(expected: Any, actual: Any, path: tuple[str | int, ...]) -> list[str]:
    """Differences between an expected and an actual value, one line per differing leaf."""
    where = format_path(path)
    if actual is _ABSENT:
        return [f"{where}: expected {_show(expected)} — argument not given"]
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        lines: list[str] = []
        for key in sorted({*expected, *actual}, key=str):
            if key not in actual:
                lines.append(
                    f"{format_path((*path, str(key)))}: expected {_show(expected[key])} — missing"
                )
            elif key not in expected:
                lines.append(f"{format_path((*path, str(key)))}: unexpected {_show(actual[key])}")
            else:
                lines.extend(diff(expected[key], actual[key], (*path, str(key))))
        return lines
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            line
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for line in diff(e, a, (*path, i))
        ]
    if expected == actual and type(expected) is type(actual):
        return []
    if (
        isinstance(expected, int | float)
        and isinstance(actual, int | float)
        and not isinstance(expected, bool)
        and not isinstance(actual, bool)
        and expected == actual
    ):
        return []
    return [f"{where}: expected {_show(expected)} — got {_show(actual)}"]


def _show(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)
