"""The `wait` step and `cancel_waits_on`: good forms load, bad forms are located load errors."""

from __future__ import annotations

import pytest

from rules import ACTIONS

NOTE = "      - uses: sdp.add_note\n        with: {request_id: '1', description: late}\n"


def waiting_rule(with_block: str, extra: str = "") -> str:
    return (
        "rules:\n  - id: escalate\n    on: request.created\n" + extra + "    actions:\n"
        "      - id: pause\n        uses: wait\n" + with_block + NOTE
    )


def test_wait_with_duration_and_until_loads(load_one, context):
    rule_set = load_one(
        waiting_rule(
            "        with:\n          duration: 30m\n"
            "          until: {request.technician: {empty: true}}\n",
            extra="    cancel_waits_on: [request.updated, 'request.note_*']\n",
        )
    )
    rule = rule_set.rules[0]
    pause = rule.actions[0]
    assert pause.uses == "wait"
    assert dict(pause.args) == {"duration": 1800}  # `until` lives on the step, not in args
    assert rule.cancel_waits_on == ("request.updated", "request.note_*")
    assert rule.cancels_waits_on("request.updated")
    assert rule.cancels_waits_on("request.note_added")
    assert not rule.cancels_waits_on("request.created")
    assert pause.until_holds({**context, "request": {"technician": None}}).matched
    verdict = pause.until_holds({**context, "request": {"technician": {"name": "Ann"}}})
    assert not verdict.matched
    assert verdict.reason is not None
    assert "request.technician" in verdict.reason


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("365d", None)]
)
def test_durations(load_one, text, seconds):
    rule_set = load_one(waiting_rule(f"        with: {{duration: {text}}}\n"))
    assert rule_set.rules[0].actions[0].args["duration"] == (seconds or 365 * 86400)
    assert rule_set.rules[0].actions[0].until is None
    assert rule_set.rules[0].cancel_waits_on == ()


BAD = [
    pytest.param("        with: {}\n", "actions[0].with", "missing required argument", id="none"),
    pytest.param("", "actions[0]", "wait needs `with:` and its arguments: duration", id="no-with"),
    pytest.param(
        "        with: {duration: 30}\n",
        "actions[0].with.duration",
        "expected a duration such as 90s, 30m, 2h or 1d, got the number 30",
        id="number",
    ),
    pytest.param(
        "        with: {duration: 30 minutes}\n",
        "actions[0].with.duration",
        "bad duration: '30 minutes' is not a duration",
        id="words",
    ),
    pytest.param(
        "        with: {duration: 0s}\n", "actions[0].with.duration", "out of range", id="zero"
    ),
    pytest.param(
        "        with: {duration: 366d}\n", "actions[0].with.duration", "at most 365d", id="long"
    ),
    pytest.param(
        '        with: {duration: "{{ request.x }}"}\n',
        "actions[0].with.duration",
        "bad duration",
        id="template",
    ),
    pytest.param(
        "        with: {duration: 1m, until: yes}\n",
        "actions[0].with.until",
        "expected a condition mapping",
        id="until-text",
    ),
    pytest.param(
        "        with: {duration: 1m, until: {request.technician: {emptee: true}}}\n",
        "actions[0].with.until.request.technician.emptee",
        "did you mean 'empty'",
        id="until-bad-operator",
    ),
    pytest.param(
        "        with: {duration: 1m, until: {}}\n",
        "actions[0].with.until",
        "empty condition",
        id="until-empty",
    ),
    pytest.param(
        "        with: {duration: 1m, untill: {request.id: 1}}\n",
        "actions[0].with.untill",
        "did you mean 'until'",
        id="until-typo",
    ),
]


@pytest.mark.parametrize(("with_block", "where", "message"), BAD)
def test_bad_wait(load_errors, with_block, where, message):
    errors = load_errors(waiting_rule(with_block))
    assert len(errors) == 1, errors
    error = errors[0]
    assert error.path == f"rules[0].{where}"
    assert message in error.message
    assert error.rule == "escalate"
    assert error.line > 0
    assert error.column > 0


BAD_CANCEL = [
    pytest.param("    cancel_waits_on: 5\n", "expected text", id="number"),
    pytest.param("    cancel_waits_on: []\n", "at least 1", id="empty"),
    pytest.param("    cancel_waits_on: 'request updated'\n", "event type", id="bad-pattern"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_CANCEL)
def test_bad_cancel_waits_on(load_errors, extra, message):
    errors = load_errors(waiting_rule("        with: {duration: 1m}\n", extra=extra))
    assert [e.path for e in errors] == ["rules[0].cancel_waits_on"]
    assert message in errors[0].message
    assert (errors[0].line, errors[0].column) == (4, 22)


def test_cancel_waits_on_without_a_wait_is_an_error(load_errors):
    text = (
        "rules:\n  - id: r1\n    on: request.created\n"
        "    cancel_waits_on: request.updated\n    actions:\n" + NOTE
    )
    errors = load_errors(text)
    assert [(e.path, e.line, e.column) for e in errors] == [("rules[0].cancel_waits_on", 4, 22)]
    assert "needs a `uses: wait` step" in errors[0].message


def test_later_steps_may_read_earlier_outputs_across_a_wait(load_one):
    text = (
        "rules:\n  - id: r1\n    on: request.created\n    actions:\n"
        "      - id: first\n        uses: sdp.add_note\n"
        "        with: {request_id: '1', description: x}\n"
        "      - uses: wait\n        with: {duration: 2s}\n"
        "      - uses: sdp.add_note\n"
        "        with: {request_id: '1', description: 'after {{ steps.first.json.id }}'}\n"
    )
    actions = load_one(text).rules[0].actions
    assert [a.id for a in actions] == ["first", "step2", "step3"]


def test_wait_is_in_the_catalogue():
    assert ACTIONS["wait"].required == ("duration",)
    assert ACTIONS["wait"].optional == ("until",)
