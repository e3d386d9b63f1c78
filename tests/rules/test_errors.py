"""Every bad form of rule file is a load error with file:line:column, rule id and key path."""

from __future__ import annotations

import pytest

from rules import RuleError, RuleLoadError, load_rules
from tests.rules.conftest import rule_yaml

ADD_NOTE = "- uses: sdp.add_note\n  with: {request_id: '1', description: x}\n"

# (YAML text, key path of the error, a piece of its message)
BAD_FILES = [
    pytest.param("rules: [\n", "", "invalid YAML", id="bad-yaml"),
    pytest.param("- a\n- b\n", "", "expected a mapping with a `rules:` list", id="not-a-mapping"),
    pytest.param("", "", "the file is empty", id="empty-file"),
    pytest.param("rule: []\n", "rule", "did you mean 'rules'", id="missing-rules-typo"),
    pytest.param("other: 1\n", "", "missing required top-level key 'rules'", id="missing-rules"),
    pytest.param("rules: {a: 1}\n", "rules", "expected a list", id="rules-not-a-list"),
    pytest.param("rules: [5]\n", "rules[0]", "expected a mapping", id="rule-not-a-mapping"),
    pytest.param("a: 1\n---\nb: 2\n", "", "invalid YAML", id="two-documents"),
    pytest.param("rules:\n  - id: Bad Id\n    on: x\n", "rules[0].id", "is not valid", id="bad-id"),
    pytest.param("rules:\n  - id: -x\n    on: x\n", "rules[0].id", "is not valid", id="id-dash"),
    pytest.param("rules:\n  - id: 5\n    on: x\n", "rules[0].id", "expected text", id="id-number"),
    pytest.param("rules:\n  - on: x\n", "rules[0]", "missing required rule key 'id'", id="no-id"),
    pytest.param("rules:\n  - id: a\n", "rules[0]", "missing required rule key 'on'", id="no-on"),
    pytest.param("rules:\n  - id: a\n    on: 5\n", "rules[0].on", "expected text", id="on-num"),
    pytest.param(
        "rules:\n  - id: a\n    on: {x: 1}\n", "rules[0].on", "expected text", id="on-mapping"
    ),
    pytest.param("rules:\n  - id: a\n    on: []\n", "rules[0].on", "at least 1", id="on-empty"),
    pytest.param(
        "rules:\n  - id: a\n    on: 'request created'\n",
        "rules[0].on",
        "event type",
        id="on-bad-pattern",
    ),
    pytest.param(
        "rules:\n  - id: a\n    on: x\n    whne: {}\n",
        "rules[0].whne",
        "unknown rule key 'whne'; did you mean 'when'?",
        id="unknown-key",
    ),
    pytest.param(
        "rules:\n  - id: a\n    on: x\n    order: high\n",
        "rules[0].order",
        "expected a whole number",
        id="order-text",
    ),
    pytest.param(
        "rules:\n  - id: a\n    on: x\n    stop: 'yes'\n",
        "rules[0].stop",
        "expected true or false",
        id="stop-text",
    ),
    pytest.param(
        "rules:\n  - id: a\n    on: x\n    enabled: null\n",
        "rules[0].enabled",
        "expected true or false, got null",
        id="enabled-null",
    ),
    pytest.param(
        "rules:\n  - id: a\n    on: x\n    on: y\n",
        "rules[0].on",
        "duplicate key",
        id="duplicate-key",
    ),
    pytest.param(
        rule_yaml(when="request.subject: {icontain: x}\n"),
        "rules[0].when.request.subject.icontain",
        "unknown operator 'icontain'; did you mean 'icontains'?",
        id="unknown-operator",
    ),
    pytest.param(
        rule_yaml(when="requst.subject: x\n"),
        "rules[0].when.requst.subject",
        "did you mean 'request.subject'",
        id="unknown-field-root",
    ),
    pytest.param(
        rule_yaml(when="alll: []\n"),
        "rules[0].when.alll",
        "did you mean 'all'",
        id="unknown-combinator",
    ),
    pytest.param(
        rule_yaml(when="all: {request.id: 1}\n"),
        "rules[0].when.all",
        "needs a non-empty list",
        id="all-not-a-list",
    ),
    pytest.param(
        rule_yaml(when="any: []\n"), "rules[0].when.any", "needs a non-empty list", id="any-empty"
    ),
    pytest.param(
        rule_yaml(when="not: 5\n"), "rules[0].when.not", "expected a condition", id="not-scalar"
    ),
    pytest.param(
        rule_yaml(extra="    when: 5\n"), "rules[0].when", "expected a condition", id="when-scalar"
    ),
    pytest.param(
        rule_yaml(extra="    when: {}\n"), "rules[0].when", "empty condition", id="when-empty"
    ),
    pytest.param(
        rule_yaml(when="request.subject: {}\n"),
        "rules[0].when.request.subject",
        "no operator given",
        id="no-operator",
    ),
    pytest.param(
        rule_yaml(when="request: x\n"), "rules[0].when.request", "whole object", id="whole-object"
    ),
    pytest.param(
        rule_yaml(when="request.subject: {matches: '(['}\n"),
        "rules[0].when.request.subject.matches",
        "bad regular expression",
        id="bad-regex",
    ),
    pytest.param(
        rule_yaml(when="request.created_time: {older_than: 5 minutes}\n"),
        "rules[0].when.request.created_time.older_than",
        "bad duration",
        id="bad-duration",
    ),
    pytest.param(
        rule_yaml(when="request.created_time: {newer_than: 30}\n"),
        "rules[0].when.request.created_time.newer_than",
        "bad duration",
        id="duration-without-unit",
    ),
    pytest.param(
        rule_yaml(when="request.site: null\n"),
        "rules[0].when.request.site",
        "not null",
        id="null-shorthand",
    ),
    pytest.param(
        rule_yaml(when="request.site: {contains: null}\n"),
        "rules[0].when.request.site.contains",
        "not null",
        id="null-contains",
    ),
    pytest.param(
        rule_yaml(when="request.x: {changed_to: null}\n"),
        "rules[0].when.request.x.changed_to",
        "not null",
        id="null-changed-to",
    ),
    pytest.param(
        rule_yaml(when="request.x: {gt: [1, 2]}\n"),
        "rules[0].when.request.x.gt",
        "number or an ISO-8601",
        id="gt-list",
    ),
    pytest.param(
        rule_yaml(when="request.x: {lt: soon}\n"),
        "rules[0].when.request.x.lt",
        "neither a number",
        id="lt-text",
    ),
    pytest.param(
        rule_yaml(when="request.x: {in: High}\n"),
        "rules[0].when.request.x.in",
        "needs a list",
        id="in-scalar",
    ),
    pytest.param(
        rule_yaml(when="request.x: {in: [a, null]}\n"),
        "rules[0].when.request.x.in",
        "not null",
        id="in-null-item",
    ),
    pytest.param(
        rule_yaml(when="request.x: {exists: 'yes'}\n"),
        "rules[0].when.request.x.exists",
        "true or false",
        id="exists-text",
    ),
    pytest.param(
        rule_yaml(when="payload.x: {changed: true}\n"),
        "rules[0].when.payload.x.changed",
        "must start with request.",
        id="changed-outside-request",
    ),
    pytest.param(
        rule_yaml(actions="- uses: sdp.add_nte\n"),
        "rules[0].actions[0].uses",
        "did you mean 'sdp.add_note'",
        id="unknown-action",
    ),
    pytest.param(
        rule_yaml(actions="- with: {}\n"),
        "rules[0].actions[0]",
        "missing required step key 'uses'",
        id="no-uses",
    ),
    pytest.param(
        rule_yaml(actions="- uses: sdp.add_note\n"),
        "rules[0].actions[0]",
        "needs `with:`",
        id="no-with",
    ),
    pytest.param(
        rule_yaml(actions="- uses: sdp.add_note\n  with: {request_id: '1'}\n"),
        "rules[0].actions[0].with",
        "missing required argument of sdp.add_note 'description'",
        id="missing-required-arg",
    ),
    pytest.param(
        rule_yaml(actions="- uses: sdp.add_note\n  with: {request_id: '1', descripton: x}\n"),
        "rules[0].actions[0].with.descripton",
        "did you mean 'description'",
        id="unknown-with-arg",
    ),
    pytest.param(
        rule_yaml(actions="- uses: log\n  with: {message: x, connection: sdp}\n"),
        "rules[0].actions[0].with.connection",
        "unknown argument of log",
        id="arg-not-for-action",
    ),
    pytest.param(
        rule_yaml(actions="- uses: log\n  with: [message]\n"),
        "rules[0].actions[0].with",
        "expected a mapping",
        id="with-not-mapping",
    ),
    pytest.param(
        rule_yaml(actions=ADD_NOTE + "  on_error: ignore\n"),
        "rules[0].actions[0].on_error",
        "unknown on_error value 'ignore'",
        id="bad-on-error",
    ),
    pytest.param(
        rule_yaml(actions=ADD_NOTE + "  if: sometimes\n"),
        "rules[0].actions[0].if",
        "expected true or false or a {{ template }}",
        id="if-text",
    ),
    pytest.param(
        rule_yaml(actions=ADD_NOTE + "  if: 'x {{ request.id }}'\n"),
        "rules[0].actions[0].if",
        "exactly one {{ expression }}",
        id="if-mixed",
    ),
    pytest.param(
        rule_yaml(actions=ADD_NOTE + "  id: Page\n"),
        "rules[0].actions[0].id",
        "step id",
        id="bad-step-id",
    ),
    pytest.param(
        rule_yaml(actions=ADD_NOTE + "  id: a\n" + ADD_NOTE + "  id: a\n"),
        "rules[0].actions[1].id",
        "duplicate step id 'a'",
        id="duplicate-step-id",
    ),
    pytest.param(
        rule_yaml(actions="- uses: log\n  with: {message: '{{ request.id }'}\n"),
        "rules[0].actions[0].with.message",
        "template syntax error",
        id="template-syntax",
    ),
    pytest.param(
        rule_yaml(actions="- uses: log\n  with: {message: '{{ x | nofilter }}'}\n"),
        "rules[0].actions[0].with.message",
        "nofilter",
        id="template-unknown-filter",
    ),
    pytest.param(
        rule_yaml(actions="- uses: log\n  with: {message: '{{ reqest.id }}'}\n"),
        "rules[0].actions[0].with.message",
        "did you mean 'request'",
        id="template-unknown-variable",
    ),
    pytest.param(
        rule_yaml(
            actions="- uses: log\n  with: {message: '{{ steps.later.json }}'}\n"
            "- uses: log\n  id: later\n  with: {message: x}\n"
        ),
        "rules[0].actions[0].with.message",
        "not an earlier step",
        id="template-later-step",
    ),
    pytest.param(
        rule_yaml(
            actions="- uses: log\n  id: a\n  with: {message: x}\n"
            "- uses: log\n  with: {message: '{{ steps.a.body }}'}\n"
        ),
        "rules[0].actions[1].with.message",
        "not a step output",
        id="template-bad-step-output",
    ),
    pytest.param(
        rule_yaml(actions="- uses: http.get\n  with: {url: /x, timeout: soon}\n"),
        "rules[0].actions[0].with.timeout",
        "expected a number",
        id="arg-wrong-type",
    ),
    pytest.param(
        rule_yaml(actions="- uses: sdp.update_request\n  with: {request_id: '1', fields: [a]}\n"),
        "rules[0].actions[0].with.fields",
        "expected a mapping",
        id="fields-not-mapping",
    ),
    pytest.param(
        rule_yaml(actions="- uses: log\n  with: {message: x, level: loud}\n"),
        "rules[0].actions[0].with.level",
        "unknown level 'loud'",
        id="bad-log-level",
    ),
    pytest.param(
        rule_yaml(actions="- uses: http.get\n  with: {url: /x, connection: Bad-Name}\n"),
        "rules[0].actions[0].with.connection",
        "link name",
        id="bad-connection-name",
    ),
    pytest.param(
        rule_yaml(actions="- uses: http.get\n  with: {url: /x, connection: '{{ request.id }}'}\n"),
        "rules[0].actions[0].with.connection",
        "not a template",
        id="templated-connection",
    ),
    pytest.param(
        "rules:\n  - id: a\n    on: x\n    <<: {b: 1}\n", "", "merge keys", id="merge-key"
    ),
    pytest.param(
        "rules:\n  - id: a\n    on: !!python/name:os.system x\n", "", "cannot read", id="python-tag"
    ),
    pytest.param("rules: &a\n  - *a\n", "", "refers to itself", id="recursive-alias"),
]


@pytest.mark.parametrize(("text", "path", "message"), BAD_FILES)
def test_bad_file(load_errors, text, path, message):
    errors = load_errors(text)
    assert all(isinstance(error, RuleError) for error in errors)
    matching = [e for e in errors if message in e.message and e.path == path]
    assert matching, "\n".join(str(e) for e in errors)
    error = matching[0]
    assert error.file.endswith("rules.yml")
    assert error.line >= 1 or message in ("the file is empty",)
    assert error.column >= 1 or error.line == 0


def test_error_carries_rule_id_line_and_column(load_errors):
    text = "rules:\n  - id: first\n    on: x\n    when:\n      request.subject: {icontain: x}\n"
    (error,) = load_errors(text)
    assert error.rule == "first"
    assert (error.line, error.column) == (5, 25)
    assert str(error).startswith(f"{error.file}:5:25: [rule first] rules[0].when.request.subject")


def test_all_errors_in_all_files_in_one_run(write_rules):
    folder = write_rules(
        {
            "a.yml": "rules:\n  - id: a\n    on: 5\n    stop: maybe\n",
            "b.yml": "rules: [\n",
            "c.yml": rule_yaml(when="request.x: {matches: '('}\n")
            + "  - id: second\n    on: x\n    whne: 1\n",
        }
    )
    with pytest.raises(RuleLoadError) as caught:
        load_rules(folder)
    errors = caught.value.errors
    files = {e.file.rsplit("/", 1)[-1] for e in errors}
    assert files == {"a.yml", "b.yml", "c.yml"}
    assert len(errors) == 5
    text = str(caught.value)
    assert text.startswith("5 errors in rule files:")
    assert all(str(e) in text for e in errors)


def test_duplicate_id_across_files_names_both_places(write_rules):
    folder = write_rules(
        {
            "a.yml": "rules:\n  - id: same\n    on: x\n",
            "sub/b.yml": "rules:\n  - id: other\n    on: x\n  - id: same\n    on: y\n",
        }
    )
    with pytest.raises(RuleLoadError) as caught:
        load_rules(folder)
    (error,) = caught.value.errors
    assert error.file.endswith("sub/b.yml")
    assert (error.line, error.rule) == (4, "same")
    assert "duplicate rule id 'same'" in error.message
    assert f"{folder / 'a.yml'}:2" in error.message


def test_unknown_connection_with_suggestion(load_errors):
    text = rule_yaml(actions="- uses: http.get\n  with: {url: /x, connection: pagerduti}\n")
    (error,) = load_errors(text, connections={"pagerduty", "sdp"})
    assert error.path == "rules[0].actions[0].with.connection"
    assert "unknown connection 'pagerduti'; did you mean 'pagerduty'?" in error.message
    assert error.line == 6


def test_missing_folder(tmp_path):
    with pytest.raises(RuleLoadError) as caught:
        load_rules(tmp_path / "nope")
    assert "does not exist" in str(caught.value)


def test_folder_is_a_file(tmp_path):
    file = tmp_path / "f.yml"
    file.write_text("rules: []")
    with pytest.raises(RuleLoadError, match="is not a folder"):
        load_rules(file)


def test_not_utf8(write_rules):
    folder = write_rules()
    (folder / "bin.yml").write_bytes(b"rules: [\xff\xfe]\n")
    with pytest.raises(RuleLoadError, match="not UTF-8"):
        load_rules(folder)


def test_billion_laughs_is_refused(write_rules):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    folder = write_rules({"lol.yml": "\n".join(lines) + "\nrules: *a8\n"})
    with pytest.raises(RuleLoadError, match="too large"):
        load_rules(folder)


def test_load_error_to_dicts_shape(load_errors, write_rules):
    folder = write_rules({"rules.yml": "rules:\n  - id: a\n    on: x\n    whne: 1\n"})
    with pytest.raises(RuleLoadError) as caught:
        load_rules(folder)
    (item,) = caught.value.to_dicts()
    assert set(item) == {"file", "line", "column", "rule", "path", "message"}
    assert item["rule"] == "a"
    assert item["path"] == "rules[0].whne"
