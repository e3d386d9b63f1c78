"""Error types of the rule language: what went wrong, where, and in which rule."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from configfiles import InvalidConfig


@dataclass(frozen=True, slots=True)
class RuleError:
    """One problem in a rule (or test-case) file, with its location.

    ``line`` and ``column`` are 1-based; 0 means "the whole file" (e.g. it cannot be read).
    ``rule`` is the id of the rule the problem is in, when known. ``path`` is the key path
    from the top of the file, e.g. ``rules[2].when.all[1].request.subject``.
    """

    file: str
    line: int
    column: int
    rule: str | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        rule = f" [rule {self.rule}]" if self.rule else ""
        path = f" {self.path}:" if self.path else ""
        return f"{where}:{rule}{path} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape: file, line, column, rule, path, message."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "rule": self.rule,
            "path": self.path,
            "message": self.message,
        }


class RuleLoadError(InvalidConfig[RuleError]):
    """Rule files are invalid; ``errors`` holds every problem found, in every file.

    The errors are kept sorted by file, line and column, so text and JSON list them in the
    order a reader meets them.
    """

    def __init__(self, errors: Iterable[RuleError]) -> None:
        super().__init__(errors, "rule files")

    def to_dicts(self) -> list[dict[str, Any]]:
        """Every error in its JSON shape."""
        return [error.to_dict() for error in self.errors]


class TemplateError(Exception):
    """A template could not be rendered; ``variable`` names the missing one, if any."""

    def __init__(self, message: str, *, variable: str | None = None, source: str = "") -> None:
        self.message = message
        self.variable = variable
        self.source = source
        super().__init__(message)
