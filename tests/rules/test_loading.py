"""Loading valid rule files: defaults, files picked up, version, records are frozen."""

from __future__ import annotations

import dataclasses

import pytest

from rules import Action, Rule, RuleLoadError, RuleSet, load_rules
from tests.rules.conftest import DATA

EXAMPLE = """
rules:
  - id: vip-outage-page
    description: Page on-call for VIP outages
    on: [request.created, request.updated]
    order: 10
    when:
      all:
        - request.priority.name: High
        - request.subject: {icontains: outage}
        - any:
            - request.requester.is_vip_user: true
            - request.site.name: {in: [HQ, DC1]}
        - not: {request.status.name: Closed}
    actions:
      - id: page
        uses: http.post
        with:
          connection: pagerduty
          url: https://events.pagerduty.com/v2/enqueue
          json: {summary: "{{ request.subject }}", severity: critical}
      - uses: sdp.add_note
        if: "{{ steps.page.status == 202 }}"
        with:
          request_id: "{{ request.id }}"
          description: "Paged on-call ({{ steps.page.json.dedup_key }})"
          show_to_requester: false
    stop: false
"""


def test_design_example_loads(load_one):
    rule_set = load_one(EXAMPLE, connections={"pagerduty"})
    (rule,) = rule_set.rules
    assert isinstance(rule, Rule)
    assert rule.id == "vip-outage-page"
    assert rule.on == ("request.created", "request.updated")
    assert (rule.order, rule.stop, rule.enabled) == (10, False, True)
    assert [a.id for a in rule.actions] == ["page", "step2"]
    page, note = rule.actions
    assert isinstance(page, Action)
    assert page.connection == "pagerduty"
    assert note.connection is None
    assert (page.on_error, note.on_error) == ("stop", "stop")
    assert rule.line == 3
    assert rule.file.endswith("rules.yml")


def test_defaults(load_one):
    rule = load_one("rules:\n  - id: a\n    on: x\n").rules[0]
    assert (rule.order, rule.stop, rule.enabled, rule.description) == (100, False, True, "")
    assert rule.when is None
    assert rule.actions == ()


def test_records_are_frozen(load_one):
    rule = load_one(EXAMPLE).rules[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        rule.actions[0].args["url"] = "x"  # type: ignore[index]


def test_on_accepts_a_single_string(load_one):
    assert load_one("rules:\n  - id: a\n    on: request.created\n").rules[0].on == (
        "request.created",
    )


def test_on_key_is_a_string_in_yaml_12(load_one):
    # A YAML 1.1 loader would read `on:` as True and `yes` as a boolean.
    rule = load_one("rules:\n  - id: a\n    on: [yes]\n").rules[0]
    assert rule.on == ("yes",)


def test_files_found_recursively_both_extensions_skipping_hidden_and_cases(write_rules):
    folder = write_rules(
        {
            "a.yml": "rules:\n  - id: a\n    on: x\n",
            "sub/deeper/b.yaml": "rules:\n  - id: b\n    on: x\n",
            ".hidden.yml": "not: [valid",
            ".git/c.yml": "rules: 5",
            "checks.case.yml": "cases: []",
            "notes.txt": "ignored",
        }
    )
    assert [r.id for r in load_rules(folder).rules] == ["a", "b"]


def test_empty_folder_is_an_empty_rule_set(write_rules):
    rule_set = load_rules(write_rules())
    assert rule_set.rules == ()
    assert rule_set.for_event("x") == ()


def test_rules_sorted_by_order_then_id(load_one):
    rule_set = load_one(
        """
        rules:
          - {id: c, on: x}
          - {id: b, on: x, order: 5}
          - {id: a, on: x}
        """
    )
    assert [r.id for r in rule_set.rules] == ["b", "a", "c"]


def test_version_is_stable_and_follows_content(write_rules):
    folder = write_rules({"a.yml": "rules:\n  - id: a\n    on: x\n"})
    first = load_rules(folder).version
    assert first == load_rules(folder).version
    assert len(first) == 12
    int(first, 16)
    (folder / "a.yml").write_text("rules:\n  - id: a\n    on: y\n")
    assert load_rules(folder).version != first


def test_version_follows_file_names(write_rules, tmp_path):
    folder = write_rules({"a.yml": "rules: []\n"})
    first = load_rules(folder).version
    (folder / "a.yml").rename(folder / "b.yml")
    assert load_rules(folder).version != first


def test_connections_used(load_one):
    rule_set = load_one(
        """
        rules:
          - id: b
            on: x
            actions:
              - uses: sdp.get_request
                with: {request_id: "1", connection: sdp}
          - id: a
            on: x
            actions:
              - uses: http.get
                with: {url: /x, connection: acme}
              - uses: http.get
                with: {url: /y, connection: sdp}
        """
    )
    assert rule_set.connections_used() == {"acme": ("a",), "sdp": ("a", "b")}


def test_connections_not_checked_when_none(load_one):
    rule_set = load_one(
        "rules:\n  - id: a\n    on: x\n    actions:\n"
        "      - {uses: http.get, with: {url: /x, connection: nowhere}}\n",
        connections=None,
    )
    assert rule_set.connections_used() == {"nowhere": ("a",)}


def test_sample_data_folder_loads():
    rule_set = load_rules(DATA / "rules", connections={"sdp", "pagerduty", "slack"})
    assert isinstance(rule_set, RuleSet)
    assert len(rule_set.rules) >= 3


def test_on_own_writes_defaults_to_false_and_can_be_enabled(load_one) -> None:  # type: ignore[no-untyped-def]
    rule_set = load_one(
        """
        rules:
          - id: plain
            on: request.updated
          - id: sees-echoes
            on: request.updated
            on_own_writes: true
        """
    )
    assert rule_set.get("plain").on_own_writes is False
    assert rule_set.get("sees-echoes").on_own_writes is True


def test_on_own_writes_must_be_a_boolean(load_one) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuleLoadError) as caught:
        load_one("rules:\n  - id: r\n    on: request.updated\n    on_own_writes: maybe\n")
    assert "on_own_writes" in str(caught.value)
