"""explain(): which rules match, the first failing condition, rendered step arguments."""

from __future__ import annotations

import pytest

from rules import context_from_body, explain, load_rules
from tests.rules.conftest import DATA

BODY = {
    "event": "request.created",
    "request": {
        "id": "4711",
        "subject": "Mail OUTAGE",
        "priority": {"name": "Low"},
        "requester": {"is_vip_user": True},
        "status": {"name": "Open"},
    },
}


@pytest.fixture
def rule_set():
    return load_rules(DATA / "rules")


def test_context_from_body():
    ctx = context_from_body({**BODY, "previous": {"id": "1"}})
    assert ctx["event"]["type"] == "request.created"
    assert ctx["request"]["id"] == "4711"
    assert ctx["previous"] == {"id": "1"}
    assert ctx["payload"]["event"] == "request.created"
    flat = context_from_body({"event": "x", "id": "5"})
    assert flat["request"] == {"event": "x", "id": "5"}
    assert flat["previous"] is None


def test_non_match_gives_first_failing_condition(rule_set):
    result = explain(rule_set, context_from_body(BODY))
    assert result.event_type == "request.created"
    by_id = {r.id: r for r in result.rules}
    assert set(by_id) == {"ignore-own-writes", "vip-outage-page"}
    vip = by_id["vip-outage-page"]
    assert not vip.matched
    assert vip.reason == "when.all[0]: request.priority.name equals 'High' — actual: 'Low'"
    assert vip.steps == ()


def test_match_renders_steps_and_marks_run_time_values(rule_set):
    body = {**BODY, "request": {**BODY["request"], "priority": {"name": "High"}}}
    result = explain(rule_set, context_from_body(body), rule_id="vip-outage-page")
    (vip,) = result.rules
    assert vip.matched
    assert vip.runs
    page, note = vip.steps
    assert page.runs is True
    assert page.args["json"] == {"summary": "Mail OUTAGE", "severity": "critical"}
    assert note.runs is None
    assert note.note == "known at run time: steps.page.status"
    assert note.args["description"] == "<known at run time: steps.page.json.dedup_key>"
    assert note.args["request_id"] == "4711"
    data = result.to_dict()
    assert data["rules"][0]["steps"][1]["unresolved"] == [
        "'steps.page.json.dedup_key' is undefined"
    ]
    text = result.to_text()
    assert "MATCH    vip-outage-page" in text
    assert "<known at run time: steps.page.json.dedup_key>" in text


def test_stop_marks_later_rules_as_not_run(rule_set):
    body = {
        "event": "request.updated",
        "request": {
            "id": "1",
            "status": {"name": "Resolved"},
            "last_updated_by": {"email_id": "deskwire@example.com"},
        },
        "previous": {"status": {"name": "Open"}},
    }
    result = explain(rule_set, context_from_body(body))
    by_id = {r.id: r for r in result.rules}
    assert by_id["ignore-own-writes"].runs
    resolved = by_id["resolved-notify"]
    assert resolved.matched
    assert not resolved.runs
    assert resolved.reason == "matched, but the earlier rule 'ignore-own-writes' has stop: true"


def test_rule_id_not_listening_or_unknown(rule_set):
    result = explain(
        rule_set, context_from_body({"event": "other", "request": {}}), rule_id="resolved-notify"
    )
    assert result.rules[0].reason == "on: event type 'other' is not one of ['request.updated']"
    with pytest.raises(LookupError, match="did you mean 'resolved-notify'"):
        explain(rule_set, context_from_body(BODY), rule_id="resolved-notfy")


def test_disabled_rule_explained_by_id(write_rules):
    rule_set = load_rules(write_rules({"a.yml": "rules:\n  - {id: a, on: x, enabled: false}\n"}))
    assert rule_set.for_event("x") == ()
    result = explain(rule_set, {"event": {"type": "x"}}, rule_id="a")
    assert result.rules[0].reason == "the rule is disabled (enabled: false)"


def test_bad_template_in_step_is_marked_not_raised(write_rules):
    text = (
        "rules:\n  - id: a\n    on: x\n    actions:\n      - uses: log\n        with: "
        "{message: '{{ request.nope }}'}\n"
    )
    rule_set = load_rules(write_rules({"a.yml": text}))
    (rule,) = explain(rule_set, {"event": {"type": "x"}, "request": {}}).rules
    assert rule.steps[0].args == {"message": "<error: 'request.nope' is undefined>"}
