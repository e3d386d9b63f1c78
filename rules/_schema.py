"""The rule language's own kinds and report, on the schema engine of :mod:`configfiles`.

:class:`Report` makes :class:`RuleError` records that name the rule being read; the kinds
here compile templates and check the variables they read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from configfiles import (
    INVALID,
    AnyData,
    Kind,
    Node,
    Path,
    did_you_mean,
    mapping_entries,
)
from configfiles import Report as _Report
from rules._errors import RuleError
from rules._templates import (
    TEMPLATE_ROOTS,
    TemplateCompileError,
    compile_template,
    has_template,
)


class Report(_Report[RuleError]):
    """Collects the errors of one rule (or test-case) file.

    ``rule``: the id of the rule being read. ``step_ids``: inside an action, the ids of the
    earlier steps of the rule, which templates may read.
    """

    def __init__(
        self, file: str, *, rule: str | None = None, step_ids: tuple[str, ...] | None = None
    ) -> None:
        super().__init__(file)
        self.rule = rule
        self.step_ids = step_ids

    def located(self, line: int, column: int, path: str, message: str) -> RuleError:
        """A :class:`RuleError` in the rule being read."""
        return RuleError(self.file, line, column, self.rule, path, message)


def rule_report(report: _Report[Any]) -> Report:
    """``report`` as the rule report it is: rule kinds are only checked by rule files."""
    if not isinstance(report, Report):
        raise TypeError(f"rule kinds need a rules Report, not {type(report).__name__}")
    return report


@dataclass(frozen=True)
class Templated(Kind):
    """A template string (compiled now), or else a value of the ``inner`` kind."""

    inner: Kind = field(default_factory=AnyData)
    native_only: bool = False

    @property
    def expected(self) -> str:  # type: ignore[override]
        return f"{self.inner.expected} or a template"

    def check(self, node: Node, path: Path, report: _Report[Any]) -> Any:
        report = rule_report(report)
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

    def check(self, node: Node, path: Path, report: _Report[Any]) -> Any:
        report = rule_report(report)
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
