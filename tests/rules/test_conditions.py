"""Nesting of all/any/not and the reason given for a non-match."""

from __future__ import annotations

from rules import Verdict
from tests.rules.conftest import rule_yaml


def verdict(load_one, context, when: str) -> Verdict:
    return load_one(rule_yaml(when=when)).rules[0].evaluate(context)


def test_no_when_always_matches(load_one, context):
    assert load_one(rule_yaml()).rules[0].evaluate(context) == Verdict(True, None)


def test_reason_names_first_failing_condition_and_actual(load_one, context):
    when = "all:\n  - request.subject: {icontains: mail}\n  - request.priority.name: Low\n"
    result = verdict(load_one, context, when)
    assert result == Verdict(
        False, "when.all[1]: request.priority.name equals 'Low' — actual: 'High'"
    )


def test_reason_for_missing_field(load_one, context):
    result = verdict(load_one, context, "request.nope.deeper: {gt: 1}")
    assert result.reason == "when: request.nope.deeper gt 1 — actual: (missing)"


def test_any_lists_every_branch(load_one, context):
    when = "any:\n  - request.priority.name: Low\n  - request.status.name: {in: [Closed]}\n"
    reason = verdict(load_one, context, when).reason
    assert reason is not None
    assert reason.startswith("when.any: none matched — when.any[0]: request.priority.name")
    assert "when.any[1]: request.status.name in ['Closed'] — actual: 'Open'" not in reason
    assert "when.any[1]: request.status.name in" in reason


def test_not(load_one, context):
    assert verdict(load_one, context, "not: {request.priority.name: Low}").matched
    result = verdict(load_one, context, "not: {request.priority.name: High}")
    assert result.reason == (
        "when.not: must not match, but request.priority.name equals 'High' matched (actual: 'High')"
    )


def test_deep_nesting(load_one, context):
    when = """
    all:
      - any:
          - not:
              all:
                - request.priority.name: High
                - not: {request.status.name: Open}
          - request.nope: {exists: true}
      - any:
          - all:
              - any:
                  - request.tags: {contains: P1}
    """
    assert verdict(load_one, context, when).matched


def test_list_under_when_means_all(load_one, context):
    assert verdict(load_one, context, "- request.priority.name: High\n- request.id: 123\n").matched
    assert not verdict(
        load_one, context, "- request.priority.name: High\n- request.id: 1\n"
    ).matched


def test_several_keys_in_one_mapping_mean_all(load_one, context):
    result = verdict(load_one, context, "request.priority.name: High\nrequest.id: '7'\n")
    assert result.reason == "when: request.id equals '7' — actual: '123'"


def test_changed_reason_shows_previous(load_one, context):
    ctx = {**context, "previous": {"status": {"name": "Open"}}}
    result = verdict(load_one, ctx, "request.status.name: {changed_to: Open}")
    assert result.reason == (
        "when: request.status.name changed_to 'Open' — actual: 'Open' (previous: 'Open')"
    )
    result = verdict(load_one, context, "request.status.name: {changed: true}")
    assert result.reason is not None
    assert result.reason.endswith("(no previous state)")
