"""Steps: catalogue, ids, `if`, rendering of `with`, step outputs in later steps."""

from __future__ import annotations

import pytest

from rules import ACTIONS, TemplateError
from tests.rules.conftest import rule_yaml

STEPS = """
- id: page
  uses: http.post
  on_error: continue
  with:
    connection: pagerduty
    url: https://events.example/v2/enqueue
    headers: {X-Req: "{{ request.id }}"}
    json:
      summary: "{{ request.subject }}"
      vip: "{{ request.requester.is_vip_user }}"
      tags: ["{{ request.tags[0] }}", fixed]
    timeout: 10
    expect_status: [200, 202]
- uses: sdp.add_note
  if: "{{ steps.page.status == 202 }}"
  with:
    request_id: "{{ request.id }}"
    description: "Paged ({{ steps.page.json.dedup_key }})"
    show_to_requester: false
- uses: sdp.update_request
  if: false
  with:
    request_id: "{{ request.id }}"
    fields: "{{ steps.page.json }}"
"""


@pytest.fixture
def actions(load_one):
    return load_one(rule_yaml(actions=STEPS)).rules[0].actions


def test_ids_given_or_numbered(actions):
    assert [a.id for a in actions] == ["page", "step2", "step3"]
    assert [a.uses for a in actions] == ["http.post", "sdp.add_note", "sdp.update_request"]
    assert [a.on_error for a in actions] == ["continue", "stop", "stop"]
    assert [a.connection for a in actions] == ["pagerduty", None, None]


def test_render_recursively_with_native_values(actions, context):
    assert actions[0].render(context) == {
        "connection": "pagerduty",
        "url": "https://events.example/v2/enqueue",
        "headers": {"X-Req": "123"},
        "json": {"summary": "Mail outage in HQ", "vip": True, "tags": ["mail", "fixed"]},
        "timeout": 10,
        "expect_status": [200, 202],
    }


def test_step_outputs_in_later_steps(actions, context):
    ctx = {**context, "steps": {"page": {"status": 202, "json": {"dedup_key": "k1"}}}}
    assert actions[1].should_run(ctx) is True
    assert actions[1].render(ctx)["description"] == "Paged (k1)"
    assert actions[2].render(ctx)["fields"] == {"dedup_key": "k1"}  # stays a dict
    ctx["steps"]["page"]["status"] = 500
    assert actions[1].should_run(ctx) is False


def test_if_absent_true_and_literal_false(actions, context):
    assert actions[0].should_run(context) is True
    assert actions[2].should_run(context) is False


def test_render_raises_template_error_naming_variable(actions, context):
    with pytest.raises(TemplateError) as caught:
        actions[1].render(context)
    assert caught.value.variable == "steps.page.json.dedup_key"
    with pytest.raises(TemplateError):
        actions[1].should_run(context)


def test_render_partial_marks_unknown_outputs(actions, context):
    args, problems = actions[1].render_partial(context)
    assert args == {
        "request_id": "123",
        "description": "<known at run time: steps.page.json.dedup_key>",
        "show_to_requester": False,
    }
    assert problems == ["'steps.page.json.dedup_key' is undefined"]


def test_catalogue_is_data():
    assert set(ACTIONS) == {
        "sdp.add_note", "sdp.update_request", "sdp.add_worklog", "sdp.get_request",
        "sdp.add_task", "sdp.add_resolution", "sdp.close_request", "sdp.assign_request",
        "sdp.pickup_request", "sdp.search_requests", "sdp.list_notes", "sdp.link_requests",
        "http.get", "http.post", "http.put", "http.patch", "http.delete", "log", "wait",
    }  # fmt: skip
    assert ACTIONS["sdp.add_note"].required == ("request_id", "description")
    assert set(ACTIONS["sdp.add_note"].optional) == {
        "show_to_requester", "notify_technician", "mark_first_response",
        "add_to_linked_requests", "connection",
    }  # fmt: skip
    assert ACTIONS["http.get"].required == ("url",)
    assert ACTIONS["log"].optional == ("level",)
    for spec in ACTIONS.values():
        assert spec.description
        assert spec.example


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_every_catalogue_example_loads(load_one, name):
    spec = ACTIONS[name]
    rule_set = load_one(rule_yaml(actions=spec.example + "\n"))
    assert rule_set.rules[0].actions[0].uses == name


def test_template_accepted_where_a_typed_value_is(load_one, context):
    text = rule_yaml(
        actions="- uses: sdp.add_worklog\n  with: {request_id: '1', description: x, "
        "hours: '{{ request.id | int }}', minutes: 5}\n"
    )
    action = load_one(text).rules[0].actions[0]
    assert action.render(context)["hours"] == 123
