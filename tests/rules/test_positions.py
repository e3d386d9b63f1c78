"""Every kind of rule-file error points at the exact key or value at fault, in file order.

The rule: the key itself for a bad, unknown or duplicate key; the value for a bad value or
a bad type (the key, when the value was left empty); the key of the enclosing mapping for a
missing required key (the list item itself when the mapping is an item of a list); where
the parser stopped for YAML syntax.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deskwire.rules_cli import rules_group

RULE = "rules:\n  - id: a\n    on: x\n"


def step(*lines: str) -> str:
    """A rule with one `actions:` list made of ``lines`` (indented under it)."""
    return RULE + "    actions:\n" + "".join(f"      {line}\n" for line in lines)


# (error kind, file text, "line:column", key path, a piece of the message)
POSITIONS = [
    pytest.param(
        "rules:\n  - id: a\n    on: x\n   bad: 1\n",
        "4:4",
        "",
        "expected <block end>",
        id="yaml-syntax-indentation",
    ),
    pytest.param(
        "rules:\n  - id: a\n    on: [x\n",
        "4:1",
        "",
        "flow sequence (from line 3, column 9)",
        id="yaml-syntax-unclosed",
    ),
    pytest.param(
        "rules:\n  - id: a\n    on: x\n    on: y\n",
        "4:5",
        "rules[0].on",
        "duplicate key 'on'",
        id="duplicate-key",
    ),
    pytest.param(
        RULE + "    when: {5: x}\n",
        "4:12",
        "rules[0].when",
        "keys must be text",
        id="bad-key-not-text",
    ),
    pytest.param(
        RULE + "    when:\n      requst.subject: x\n",
        "5:7",
        "rules[0].when.requst.subject",
        "unknown key or field 'requst.subject'",
        id="bad-key-field-path",
    ),
    pytest.param(
        RULE + "    whne: {}\n",
        "4:5",
        "rules[0].whne",
        "unknown rule key 'whne'; did you mean 'when'?",
        id="unknown-key",
    ),
    pytest.param(
        RULE + "    when:\n      request.subject: {eqals: x}\n",
        "5:25",
        "rules[0].when.request.subject.eqals",
        "unknown operator 'eqals'",
        id="unknown-key-operator",
    ),
    pytest.param(
        step("- uses: log", "  with: {message: m, levl: info}"),
        "6:28",
        "rules[0].actions[0].with.levl",
        "unknown argument of log 'levl'",
        id="unknown-key-argument",
    ),
    pytest.param(
        "rules:\n  - on: x\n    id: Bad Id\n",
        "3:9",
        "rules[0].id",
        "'Bad Id' is not valid",
        id="bad-value-pattern",
    ),
    pytest.param(
        step("- uses: log", "  on_error: later", "  with: {message: m}"),
        "6:19",
        "rules[0].actions[0].on_error",
        "unknown on_error value 'later'",
        id="bad-value-choice",
    ),
    pytest.param(
        RULE + "    when:\n      request.subject: {matches: '('}\n",
        "5:34",
        "rules[0].when.request.subject.matches",
        "bad regular expression",
        id="bad-value-operand",
    ),
    pytest.param(
        step("- uses: log", "  with: {message: '{{ request.subject'}"),
        "6:25",
        "rules[0].actions[0].with.message",
        "",
        id="bad-value-template",
    ),
    pytest.param(
        "rules:\n  - id: a\n    on:\n    order: 1\n",
        "3:5",
        "rules[0].on",
        "expected text, got null",
        id="empty-value-at-its-key",
    ),
    pytest.param(
        RULE + "    order: high\n",
        "4:12",
        "rules[0].order",
        "expected a whole number, got the text 'high'",
        id="bad-type",
    ),
    pytest.param(
        RULE + "    enabled: 'no'\n",
        "4:14",
        "rules[0].enabled",
        "expected true or false",
        id="bad-type-quoted",
    ),
    pytest.param(
        "rules: {id: a}\n",
        "1:8",
        "rules",
        "expected a list",
        id="bad-type-list",
    ),
    pytest.param(
        "# nothing but a comment and an empty mapping\n{}\n",
        "2:1",
        "",
        "missing required top-level key 'rules'",
        id="missing-required-top-level",
    ),
    pytest.param(
        "rules:\n  - description: x\n    id: a\n",
        "2:5",
        "rules[0]",
        "missing required rule key 'on'",
        id="missing-required-in-list-item",
    ),
    pytest.param(
        step("- uses: http.get", "  with:", "    json: {a: 1}"),
        "6:9",
        "rules[0].actions[0].with",
        "missing required argument of http.get 'url'",
        id="missing-required-at-enclosing-key",
    ),
    pytest.param(
        step("- id: s", "  with: {message: m}"),
        "5:9",
        "rules[0].actions[0]",
        "missing required step key 'uses'",
        id="missing-required-step-key",
    ),
    pytest.param(
        step("- uses: http.get", "  with: {url: /x, connection: pagerduti}"),
        "6:37",
        "rules[0].actions[0].with.connection",
        "unknown connection 'pagerduti'",
        id="bad-reference-connection",
    ),
    pytest.param(
        step("- uses: log", "  with: {message: '{{ steps.nope.json }}'}"),
        "6:25",
        "rules[0].actions[0].with.message",
        "'steps.nope' is not an earlier step",
        id="bad-reference-step",
    ),
    pytest.param(
        step("- uses: log", "  with: {message: '{{ requets.id }}'}"),
        "6:25",
        "rules[0].actions[0].with.message",
        "unknown variable 'requets'",
        id="bad-reference-variable",
    ),
    pytest.param(
        RULE + "  - id: a\n    on: y\n",
        "4:9",
        "rules",
        "duplicate rule id 'a'",
        id="bad-reference-duplicate-rule-id",
    ),
    pytest.param(
        step(
            "- {id: s, uses: log, with: {message: m}}",
            "- {id: s, uses: log, with: {message: m}}",
        ),
        "6:14",
        "rules[0].actions[1].id",
        "duplicate step id 's'",
        id="bad-reference-duplicate-step-id",
    ),
]


@pytest.mark.parametrize(("text", "position", "path", "message"), POSITIONS)
def test_error_position(load_errors, text: str, position: str, path: str, message: str) -> None:
    errors = load_errors(text, connections={"pagerduty"})
    assert len(errors) == 1, "\n".join(str(e) for e in errors)
    (error,) = errors
    assert f"{error.line}:{error.column}" == position, str(error)
    assert error.path == path, str(error)
    assert message in error.message, str(error)


# Errors that a single pass finds out of order: a missing key is noticed after the keys
# below it, a duplicate rule id and an unknown connection only when the file is joined.
UNORDERED = """\
rules:
  - id: b
    on: x
    actions:
      - uses: http.get
        with: {url: /x, connection: nope}
  - id: c
    on: x
    order: high
  - id: a
    on: x
  - id: a
    on: x
  - description: no id, no on
    stop: maybe
"""
ORDERED_POSITIONS = [(6, 37), (9, 12), (12, 9), (14, 5), (14, 5), (15, 11)]


def test_errors_are_sorted_by_file_line_and_column(write_rules, tmp_path) -> None:
    folder = write_rules({"b.yml": UNORDERED, "a.yml": "rules:\n  - id: z\n    on: 5\n"})
    connections = tmp_path / "connections.yml"
    connections.write_text("connections:\n  pd: {name: PD, service: pagerduty}\n")
    runner = CliRunner()
    arguments = ["check", str(folder), "--connections", str(connections)]

    result = runner.invoke(rules_group, [*arguments, "--json"])
    assert result.exit_code == 1
    errors = json.loads(result.stdout)["errors"]
    found = [(e["file"].rsplit("/", 1)[-1], e["line"], e["column"]) for e in errors]
    assert found == [("a.yml", 3, 9)] + [("b.yml", *where) for where in ORDERED_POSITIONS]

    result = runner.invoke(rules_group, arguments)
    assert result.exit_code == 1
    listed = [line.strip() for line in result.output.splitlines() if ".yml:" in line]
    text_positions = [tuple(line.split(":")[0:3]) for line in listed]
    assert text_positions == [(str(folder / f), str(ln), str(col)) for f, ln, col in found]
