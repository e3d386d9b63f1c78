"""Operator semantics, one small pure function each, through real rule files."""

from __future__ import annotations

import pytest

from rules import OPERATORS
from tests.rules.conftest import rule_yaml

NOW = "2023-11-15T00:00:00Z"  # 1700006400: 6400 s after request.created_time of the context


def matches(load_one, context, when: str, **changes) -> bool:
    rule = load_one(rule_yaml(when=when)).rules[0]
    ctx = {**context, "now": NOW, **changes}
    return rule.evaluate(ctx).matched


CASES = [
    # (condition, expected) against the `context` fixture
    ("request.priority.name: High", True),
    ("request.priority.name: high", False),  # case-sensitive
    ("request.priority.name: {equals: High}", True),
    ("request.id: 123", True),  # SDP sends numbers as text
    ("request.id: {equals: '123'}", True),
    ("request.requester.is_vip_user: true", True),
    ("request.requester.is_vip_user: 'true'", True),
    ("request.requester.is_vip_user: 1", False),  # a boolean is not the number 1
    ("request.nope: x", False),
    ("request.priority.name: {not_equals: Low}", True),
    ("request.priority.name: {not_equals: High}", False),
    ("request.nope: {not_equals: x}", True),
    ("request.priority.name: {in: [Low, High]}", True),
    ("request.priority.name: {in: [Low]}", False),
    ("request.priority.name: {not_in: [Low]}", True),
    ("request.id: {in: [1, 123]}", True),
    ("request.subject: {contains: outage}", True),
    ("request.subject: {contains: Outage}", False),
    ("request.tags: {contains: P1}", True),
    ("request.tags: {contains: p1}", False),
    ("request.subject: {icontains: OUTAGE}", True),
    ("request.tags: {icontains: p1}", True),
    ("request.subject: {starts_with: Mail}", True),
    ("request.subject: {starts_with: mail}", False),
    ("request.subject: {ends_with: HQ}", True),
    ("request.id: {starts_with: 12}", True),
    ("request.subject: {matches: 'out.ge'}", True),  # search anywhere
    ("request.subject: {matches: '^outage'}", False),
    ("request.subject: {matches: '(?i)^MAIL'}", True),  # inline flags
    ("request.subject: {matches: '^Mail'}", True),
    ("request.id: {gt: 100}", True),
    ("request.id: {gt: 123}", False),
    ("request.id: {gte: 123}", True),
    ("request.id: {lt: 124.5}", True),
    ("request.id: {lte: 122}", False),
    ("request.subject: {gt: 1}", False),  # not a number: no match
    ("request.created_time: {gt: '2023-11-14T00:00:00Z'}", True),  # {value: ms} form
    ("request.created_time: {lt: '2023-11-14T00:00:00+00:00'}", False),
    ("request.created_time: {lte: '2023-11-14T22:13:20Z'}", True),
    ("request.site: {exists: true}", True),  # present though null
    ("request.nope: {exists: true}", False),
    ("request.nope: {exists: false}", True),
    ("request.site: {empty: true}", True),
    ("request.nope: {empty: true}", False),  # missing is not empty
    ("request.nope: {empty: false}", False),
    ("request.subject: {empty: false}", True),
    ("request.created_time: {older_than: 1h}", True),  # 6400 s old
    ("request.created_time: {older_than: 2h}", False),
    ("request.created_time: {newer_than: 2h}", True),
    ("request.created_time: {newer_than: 90s}", False),
    ("request.created_time: {older_than: 1d}", False),
    ("request.subject: {older_than: 1m}", False),  # not a date: no match
    ("request.tags.1: P1", True),  # numeric segments index lists
    ("request.tags.5: P1", False),
    ("event.type: request.created", True),
    ("payload.event: request.created", True),
    ("request.priority.name: {in: [High], not_equals: Low}", True),  # several operators: all
]


@pytest.mark.parametrize(("when", "expected"), CASES)
def test_operator(load_one, context, when, expected):
    assert matches(load_one, context, when) is expected


@pytest.mark.parametrize(
    ("value", "older"),
    [
        (1700000000000, True),  # epoch ms as a number
        ("1700000000000", True),  # as text
        ("2023-11-14T22:13:20Z", True),  # ISO-8601
        ("2023-11-14T23:59:00", False),  # naive ISO: read as UTC, 60 s old
        ({"value": "1700000000000", "display_value": "x"}, True),
        (None, False),
        (True, False),
    ],
)
def test_date_forms(load_one, context, value, older):
    request = {**context["request"], "due": value}
    assert matches(load_one, context, "request.due: {older_than: 1h}", request=request) is older


def test_changed_operators(load_one, context):
    previous = {**context["request"], "status": {"name": "Closed"}}
    same = dict(context["request"])
    for when, with_change, without_change, no_previous in [
        ("request.status.name: {changed: true}", True, False, False),
        ("request.status.name: {changed: false}", False, True, False),
        ("request.status.name: {changed_from: Closed}", True, False, False),
        ("request.status.name: {changed_from: Open}", False, False, False),
        ("request.status.name: {changed_to: Open}", True, False, False),
        ("request.status.name: {changed_to: Closed}", False, False, False),
    ]:
        assert matches(load_one, context, when, previous=previous) is with_change, when
        assert matches(load_one, context, when, previous=same) is without_change, when
        assert matches(load_one, context, when, previous=None) is no_previous, when


def test_changed_counts_appearing_and_disappearing_fields(load_one, context):
    previous = {key: value for key, value in context["request"].items() if key != "site"}
    assert matches(load_one, context, "request.site: {changed: true}", previous=previous)
    assert matches(load_one, context, "request.site: {changed_to: x}", previous=previous) is False


def test_registry_is_flat_and_complete():
    assert set(OPERATORS) == {
        "equals", "not_equals", "in", "not_in", "contains", "icontains", "starts_with",
        "ends_with", "matches", "gt", "gte", "lt", "lte", "exists", "empty", "changed",
        "changed_from", "changed_to", "older_than", "newer_than",
    }  # fmt: skip
    for name, spec in OPERATORS.items():
        assert spec.name == name
        assert callable(spec.test)
        assert spec.doc
        assert spec.example
        assert spec.operand


def test_clock_defaults_to_real_time(load_one, context):
    rule = load_one(rule_yaml(when="request.created_time: {older_than: 1d}")).rules[0]
    assert rule.evaluate(context).matched  # 2023 is more than a day ago
