"""Which request fields a rule reads: what the worker compares with a webhook's fields."""

from __future__ import annotations

from collections.abc import Callable

from rules import RuleSet

RULE = """\
rules:
  - id: r1
    on: request.created
    when:
      all:
        - request.priority.name: High
        - any:
            - request.site.name: HQ
            - not: {request.group.name: L1}
        - previous.status.name: Open
        - request.status.name: {changed_to: Resolved}
    actions:
      - id: note
        if: "{{ request.mode.name == 'E-Mail' }}"
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "{{ request.requester['email_id'] }} / {{ payload.x }}"
          show_to_requester: false
"""


def test_conditions_if_and_with_are_read(load_one: Callable[[str], RuleSet]) -> None:
    [rule] = load_one(RULE).rules
    assert rule.fields_read("request") == frozenset(
        {"priority", "site", "group", "status", "mode", "id", "requester"}
    )
    assert rule.fields_read("previous") == frozenset({"status"})
    assert rule.fields_read("payload") == frozenset({"x"})


def test_a_rule_that_reads_the_whole_request_says_so(
    load_one: Callable[[str], RuleSet],
) -> None:
    [rule] = load_one(
        "rules:\n  - id: r1\n    on: request.created\n    actions:\n"
        "      - uses: log\n        with: {message: '{{ request | tojson }}'}\n"
    ).rules
    assert rule.fields_read("request") is None


def test_a_rule_that_reads_nothing(load_one: Callable[[str], RuleSet]) -> None:
    [rule] = load_one(
        "rules:\n  - id: r1\n    on: request.created\n    actions:\n"
        "      - uses: log\n        with: {message: hello}\n"
    ).rules
    assert rule.fields_read("request") == frozenset()
