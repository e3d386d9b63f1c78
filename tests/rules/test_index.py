"""RuleSet.for_event: exact types, globs, disabled rules, order, cache."""

from __future__ import annotations

from rules import load_rules

RULES = """
rules:
  - {id: z-exact, on: request.created}
  - {id: a-glob, on: "request.*", order: 50}
  - {id: all-events, on: "*", order: 200}
  - {id: both, on: [request.created, "request.*"]}
  - {id: off, on: request.created, enabled: false}
  - {id: notes, on: "note.*"}
  - {id: mid, on: "request.*.done"}
"""


def test_for_event(write_rules):
    rule_set = load_rules(write_rules({"r.yml": RULES}))
    ids = [r.id for r in rule_set.for_event("request.created")]
    assert ids == ["a-glob", "both", "z-exact", "all-events"]
    assert [r.id for r in rule_set.for_event("note.added")] == ["notes", "all-events"]
    assert [r.id for r in rule_set.for_event("request.x.done")] == [
        "a-glob",
        "both",
        "mid",
        "all-events",
    ]
    assert [r.id for r in rule_set.for_event("task.created")] == ["all-events"]
    assert rule_set.for_event("request.created") is rule_set.for_event("request.created")
    assert rule_set.get("off") is not None
    assert len(rule_set) == 7


def test_cache_is_bounded(write_rules):
    rule_set = load_rules(write_rules({"r.yml": RULES}))
    for index in range(5000):
        rule_set.for_event(f"custom.{index}")
    assert len(rule_set._cache) <= 4096
