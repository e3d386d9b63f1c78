"""The condition operators: one flat registry of small pure functions.

Adding an operator is one decorated function: ``@operator(name, operand=…, doc=…, example=…)``.
The operand kind checks (and prepares) the YAML operand at load time, so a criterion that
cannot work — null where a value is needed, a bad regex, a bad duration — is a load error.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from configfiles import parse_duration


class OperandError(ValueError):
    """The operand written in the rule cannot work with this operator."""


@dataclass(frozen=True, slots=True)
class Probe:
    """What an operator looks at: the field now, and the same field in ``previous``.

    ``present`` tells a missing field from a null one. ``previous_known`` is false when the
    context has no previous state (the request was never seen before).
    """

    present: bool
    value: Any
    previous_known: bool = False
    previous_present: bool = False
    previous: Any = None
    now: float = 0.0  # epoch seconds


@dataclass(frozen=True, slots=True)
class Operator:
    """A registered operator: its test, how its operand is prepared, and its documentation."""

    name: str
    test: Callable[[Probe, Any], bool] = field(repr=False)
    prepare: Callable[[Any], Any] = field(repr=False)
    operand: str = ""
    doc: str = field(default="", repr=False)
    example: str = field(default="", repr=False)
    uses_previous: bool = False


OPERATORS: dict[str, Operator] = {}


def operator(
    name: str, *, operand: Callable[[Any], Any], doc: str, example: str, uses_previous: bool = False
) -> Callable[[Callable[[Probe, Any], bool]], Callable[[Probe, Any], bool]]:
    """Register ``fn(probe, prepared_operand) -> bool`` as the operator ``name``."""

    def register(fn: Callable[[Probe, Any], bool]) -> Callable[[Probe, Any], bool]:
        description = (operand.__doc__ or "").strip()
        OPERATORS[name] = Operator(name, fn, operand, description, doc, example, uses_previous)
        return fn

    return register


# --- operand kinds: check the operand at load time, return it prepared ---------------------


def any_value(value: Any) -> Any:
    """any value except null"""
    if value is None:
        raise OperandError("needs a value, not null (to test for null use `empty: true`)")
    return value


def scalar(value: Any) -> Any:
    """text, a number or a boolean"""
    if value is None or isinstance(value, dict | list):
        kind = "null" if value is None else type(value).__name__
        raise OperandError(f"needs text, a number or a boolean, not {kind}")
    return value


def scalar_list(value: Any) -> Any:
    """a list of texts, numbers or booleans"""
    if not isinstance(value, list):
        raise OperandError("needs a list, e.g. [High, Urgent]")
    for item in value:
        scalar(item)
    return tuple(value)


def text(value: Any) -> Any:
    """text (numbers are read as text)"""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise OperandError("needs text")
    return str(value)


def regex(value: Any) -> Any:
    """a regular expression (Python syntax; inline flags such as (?i) work)"""
    if not isinstance(value, str):
        raise OperandError("needs a regular expression as text")
    try:
        return re.compile(value)
    except re.error as exc:
        raise OperandError(f"bad regular expression {value!r}: {exc}") from None


def boolean(value: Any) -> Any:
    """true or false"""
    if not isinstance(value, bool):
        raise OperandError("needs true or false")
    return value


@dataclass(frozen=True, slots=True)
class Ordered:
    """A prepared comparison operand: a number, or a point in time (epoch seconds)."""

    is_time: bool
    number: float


def orderable(value: Any) -> Any:
    """a number, or an ISO-8601 date-time"""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise OperandError("needs a number or an ISO-8601 date-time")
    number = as_number(value)
    if number is not None:
        return Ordered(False, number)
    if isinstance(value, str):
        moment = parse_iso(value)
        if moment is not None:
            return Ordered(True, moment)
    raise OperandError(f"{value!r} is neither a number nor an ISO-8601 date-time")


def duration(value: Any) -> Any:
    """a duration: 90s, 30m, 2h or 1d"""
    try:
        return parse_duration(value, unit_required=True)
    except ValueError as exc:
        raise OperandError(f"bad duration: {exc}") from None


# --- value helpers ------------------------------------------------------------------------


def unwrap(value: Any) -> Any:
    """SDP sends date-times (and some numbers) as ``{"value": …, "display_value": …}``."""
    if isinstance(value, Mapping) and "value" in value:
        return value["value"]
    return value


def as_number(value: Any) -> float | None:
    """A number from a number or numeric text; ``None`` otherwise."""
    value = unwrap(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return None if math.isnan(number) else number
    return None


def parse_iso(value: str) -> float | None:
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def as_time(value: Any) -> float | None:
    """Epoch seconds from epoch milliseconds (number or digits) or ISO-8601 text."""
    value = unwrap(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.lstrip("-").isdigit():
            return int(stripped) / 1000.0
        return parse_iso(stripped)
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return None


def as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def loose_equal(actual: Any, expected: Any) -> bool:
    """Equality that forgives SDP's habit of sending numbers and booleans as text."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        if isinstance(actual, bool) and isinstance(expected, bool):
            return actual == expected
        other, flag = (actual, expected) if isinstance(expected, bool) else (expected, actual)
        return isinstance(other, str) and other.strip().lower() == str(flag).lower()
    if isinstance(actual, str) and isinstance(expected, int | float):
        return as_number(actual) == expected
    if isinstance(expected, str) and isinstance(actual, int | float):
        return as_number(expected) == actual
    try:
        return bool(actual == expected)
    except Exception:  # noqa: BLE001 - exotic values never match rather than crash
        return False


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


def _compare(probe: Probe, operand: Ordered, check: Callable[[float, float], bool]) -> bool:
    if not probe.present:
        return False
    actual = as_time(probe.value) if operand.is_time else as_number(probe.value)
    return actual is not None and check(actual, operand.number)


def _changed(probe: Probe) -> bool:
    if not probe.previous_known:
        return False
    if probe.present != probe.previous_present:
        return True
    return bool(probe.value != probe.previous)


# --- the operators ------------------------------------------------------------------------


@operator(
    "equals",
    operand=any_value,
    doc="The value equals the operand (numbers and "
    "booleans sent as text compare as such). `field: value` is shorthand for it.",
    example="request.priority.name: {equals: High}",
)
def equals(probe: Probe, expected: Any) -> bool:
    return probe.present and loose_equal(probe.value, expected)


@operator(
    "not_equals",
    operand=any_value,
    doc="The value differs from the operand; true for a missing field.",
    example="request.status.name: {not_equals: Closed}",
)
def not_equals(probe: Probe, expected: Any) -> bool:
    return not equals(probe, expected)


@operator(
    "in",
    operand=scalar_list,
    doc="The value equals one of the listed values.",
    example="request.site.name: {in: [HQ, DC1]}",
)
def in_(probe: Probe, choices: tuple[Any, ...]) -> bool:
    return probe.present and any(loose_equal(probe.value, choice) for choice in choices)


@operator(
    "not_in",
    operand=scalar_list,
    doc="The value equals none of the listed values; true for a missing field.",
    example="request.status.name: {not_in: [Closed, Resolved]}",
)
def not_in(probe: Probe, choices: tuple[Any, ...]) -> bool:
    return not in_(probe, choices)


@operator(
    "contains",
    operand=scalar,
    doc="Text: contains the operand as a substring. List: has an element equal to the operand.",
    example="request.subject: {contains: VPN}",
)
def contains(probe: Probe, needle: Any) -> bool:
    if not probe.present:
        return False
    if isinstance(probe.value, list):
        return any(loose_equal(item, needle) for item in probe.value)
    haystack = as_text(probe.value)
    return haystack is not None and str(needle) in haystack


@operator(
    "icontains",
    operand=text,
    doc="Like contains, ignoring case.",
    example="request.subject: {icontains: outage}",
)
def icontains(probe: Probe, needle: str) -> bool:
    if not probe.present:
        return False
    folded = needle.casefold()
    if isinstance(probe.value, list):
        return any((as_text(item) or "").casefold() == folded for item in probe.value)
    haystack = as_text(probe.value)
    return haystack is not None and folded in haystack.casefold()


@operator(
    "starts_with",
    operand=text,
    doc="The text starts with the operand.",
    example="request.subject: {starts_with: '[P1]'}",
)
def starts_with(probe: Probe, prefix: str) -> bool:
    value = as_text(probe.value) if probe.present else None
    return value is not None and value.startswith(prefix)


@operator(
    "ends_with",
    operand=text,
    doc="The text ends with the operand.",
    example="request.requester.email_id: {ends_with: '@example.com'}",
)
def ends_with(probe: Probe, suffix: str) -> bool:
    value = as_text(probe.value) if probe.present else None
    return value is not None and value.endswith(suffix)


@operator(
    "matches",
    operand=regex,
    doc="A regular-expression search anywhere in the text; inline flags such as `(?i)` work.",
    example="request.subject: {matches: '(?i)^(re: )?outage\\b'}",
)
def matches(probe: Probe, pattern: re.Pattern[str]) -> bool:
    value = as_text(probe.value) if probe.present else None
    return value is not None and pattern.search(value) is not None


@operator(
    "gt",
    operand=orderable,
    doc="Greater than a number, or later than an ISO-8601 "
    "date-time (the value may be epoch milliseconds).",
    example="request.udf_fields.udf_long1: {gt: 5}",
)
def gt(probe: Probe, operand: Ordered) -> bool:
    return _compare(probe, operand, lambda a, b: a > b)


@operator(
    "gte",
    operand=orderable,
    doc="Greater than or equal (see gt).",
    example="request.created_time: {gte: '2024-01-01T00:00:00Z'}",
)
def gte(probe: Probe, operand: Ordered) -> bool:
    return _compare(probe, operand, lambda a, b: a >= b)


@operator(
    "lt",
    operand=orderable,
    doc="Less than a number, or earlier than an ISO-8601 date-time.",
    example="request.udf_fields.udf_long1: {lt: 3}",
)
def lt(probe: Probe, operand: Ordered) -> bool:
    return _compare(probe, operand, lambda a, b: a < b)


@operator(
    "lte",
    operand=orderable,
    doc="Less than or equal (see lt).",
    example="request.due_by_time: {lte: '2030-01-01T00:00:00Z'}",
)
def lte(probe: Probe, operand: Ordered) -> bool:
    return _compare(probe, operand, lambda a, b: a <= b)


@operator(
    "exists",
    operand=boolean,
    doc="`true`: the field is present (even if null); `false`: it is missing.",
    example="request.technician: {exists: true}",
)
def exists(probe: Probe, wanted: bool) -> bool:
    return probe.present == wanted


@operator(
    "empty",
    operand=boolean,
    doc="`true`: the field is present and null, '', [] or "
    "{}; `false`: present and not empty. A missing field is neither.",
    example="request.technician: {empty: true}",
)
def empty(probe: Probe, wanted: bool) -> bool:
    return probe.present and is_empty(probe.value) == wanted


@operator(
    "changed",
    operand=boolean,
    doc="Compared with `previous` (the last state "
    "deskwire saw): `true` if the field differs, `false` if it is the same. Without a "
    "previous state both are false.",
    example="request.status.name: {changed: true}",
    uses_previous=True,
)
def changed(probe: Probe, wanted: bool) -> bool:
    return probe.previous_known and _changed(probe) == wanted


@operator(
    "changed_from",
    operand=scalar,
    doc="The field changed and its previous value equals the operand.",
    example="request.status.name: {changed_from: Open}",
    uses_previous=True,
)
def changed_from(probe: Probe, before: Any) -> bool:
    return _changed(probe) and probe.previous_present and loose_equal(probe.previous, before)


@operator(
    "changed_to",
    operand=scalar,
    doc="The field changed and its value now equals the operand.",
    example="request.status.name: {changed_to: Resolved}",
    uses_previous=True,
)
def changed_to(probe: Probe, after: Any) -> bool:
    return _changed(probe) and probe.present and loose_equal(probe.value, after)


@operator(
    "older_than",
    operand=duration,
    doc="The date-time (ISO-8601 or epoch ms, also "
    "SDP's {value: …} form) lies more than the duration in the past.",
    example="request.created_time: {older_than: 2h}",
)
def older_than(probe: Probe, seconds: int) -> bool:
    moment = as_time(probe.value) if probe.present else None
    return moment is not None and probe.now - moment > seconds


@operator(
    "newer_than",
    operand=duration,
    doc="The date-time lies less than the duration in the past (or in the future).",
    example="request.created_time: {newer_than: 30m}",
)
def newer_than(probe: Probe, seconds: int) -> bool:
    moment = as_time(probe.value) if probe.present else None
    return moment is not None and probe.now - moment < seconds
