"""What a configuration file's errors have in common: a place, an order, one exception."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar


class Located(Protocol):
    """An error with its place: ``line`` and ``column`` 1-based, 0 for the whole file."""

    @property
    def file(self) -> str: ...

    @property
    def line(self) -> int: ...

    @property
    def column(self) -> int: ...


E = TypeVar("E", bound=Located)


def in_file_order(errors: Iterable[E]) -> tuple[E, ...]:
    """The errors sorted by file, line and column (stable: ties keep the order found)."""
    return tuple(sorted(errors, key=lambda error: (error.file, error.line, error.column)))


class InvalidConfig(Exception, Generic[E]):
    """Configuration files are invalid; ``errors`` holds every problem found, in file order.

    ``files`` names what was read in the summary, e.g. ``rule files``: the message is
    ``"2 errors in rule files:"`` and then one indented line per error.
    """

    def __init__(self, errors: Iterable[E], files: str) -> None:
        self.errors: tuple[E, ...] = in_file_order(errors)
        count = len(self.errors)
        lines = [f"{count} error{'' if count == 1 else 's'} in {files}:"]
        lines.extend(f"  {error}" for error in self.errors)
        super().__init__("\n".join(lines))
