"""`rules check` on the arguments of the SDP actions: each wrong one at its line and column."""

from __future__ import annotations

import pytest

from tests.rules.conftest import rule_yaml

# rule_yaml puts the actions block at line 5; each case's bad value sits on line 8.
CASES = [
    ("sdp.add_worklog", "owner: Ann Smith", "owner", "an owner is an email address or a numeric"),
    ("sdp.add_worklog", "minutes: -5", "minutes", "out of range"),
    ("sdp.search_requests", "limit: 5000", "limit", "out of range: from 1 to 1000"),
    ("sdp.search_requests", "sort_order: up", "sort_order", "unknown sort order 'up'"),
    ("sdp.add_note", "mark_first_response: maybe", "mark_first_response", "true or false"),
    ("sdp.add_note", "add_to_linked: true", "add_to_linked", "'add_to_linked_requests'?"),
    ("sdp.close_request", "requester_ack_resolution: 3", "ack_resolution", "true or false"),
    ("sdp.link_requests", "linked_ids: [12, abc]", "linked_ids[1]", "a request id (digits)"),
    ("sdp.update_request", "fields: High", "fields", "expected a mapping"),
    ("sdp.add_resolution", "contents: x", "contents", "did you mean 'content'"),
]  # fmt: skip


@pytest.mark.parametrize(("uses", "bad", "where", "message"), CASES)
def test_wrong_argument_is_reported_at_its_place(load_errors, uses, bad, where, message):
    extra = {
        "sdp.add_resolution": "content: ok",
        "sdp.link_requests": "",
        "sdp.add_worklog": "description: ok",
        "sdp.add_note": "description: ok",
    }.get(uses, "")
    first = "request_id: '1'" if uses != "sdp.search_requests" else "limit: 10"
    lines = [first, bad] + ([extra] if extra else [])
    if uses == "sdp.search_requests":
        lines = [bad]
    body = "\n".join("    " + line for line in lines)
    text = rule_yaml(actions=f"- id: s\n  uses: {uses}\n  with:\n{body}\n")
    errors = load_errors(text)
    matching = [e for e in errors if e.path.endswith(where) and message in e.message]
    assert matching, [str(e) for e in errors]
    error = matching[0]
    assert error.rule == "r1"
    bad_line = 1 + next(i for i, line in enumerate(text.splitlines()) if bad.split(":")[0] in line)
    assert error.line == bad_line
    assert error.column >= 5


def test_update_needs_fields_or_custom_fields(load_errors):
    text = rule_yaml(actions="- uses: sdp.update_request\n  with: {request_id: '1'}\n")
    [error] = load_errors(text)
    assert "needs at least one of: fields, custom_fields" in error.message
    assert (error.line, error.column) == (6, 15)  # the `with:` mapping


def test_assign_needs_group_or_technician(load_errors):
    text = rule_yaml(actions="- uses: sdp.assign_request\n  with:\n    request_id: '1'\n")
    [error] = load_errors(text)
    assert "needs at least one of: group, technician" in error.message


def test_templates_are_accepted_where_values_are(load_one, context):
    text = rule_yaml(
        actions="- id: s\n  uses: sdp.add_worklog\n  with:\n"
        "    request_id: '{{ request.id }}'\n    description: x\n"
        "    owner: '{{ request.requester.email_id }}'\n    minutes: '{{ 3 + 2 }}'\n"
        "- uses: sdp.add_note\n  with:\n    request_id: '{{ request.id }}'\n"
        "    description: 'worklog {{ steps.s.json.id }}'\n"
    )
    actions = load_one(text).rules[0].actions
    assert actions[0].render(context)["owner"] == "ceo@example.com"
    assert actions[0].render(context)["minutes"] == 5
    ctx = {**context, "steps": {"s": {"json": {"id": "9"}}}}
    assert actions[1].render(ctx)["description"] == "worklog 9"
