"""`mode: shadow | live` on a rule and at the top of a file: good and bad forms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rules import RuleSet, context_from_body, explain, load_rules
from tests.rules.conftest import WriteRules

NOTE = """\
    actions:
      - uses: sdp.add_note
        with: {request_id: "{{ request.id }}", description: seen}
"""


def _rules(top: str = "", first: str = "", second: str = "") -> str:
    return (
        f"{top}rules:\n"
        f"  - id: one\n    on: request.created\n{first}{NOTE}"
        f"  - id: two\n    on: request.created\n{second}{NOTE}"
    )


def _modes(rule_set: RuleSet) -> dict[str, str]:
    return {rule.id: rule.mode for rule in rule_set.rules}


def test_rules_are_live_unless_marked(load_one: Callable[[str], RuleSet]) -> None:
    rule_set = load_one(_rules())
    assert _modes(rule_set) == {"one": "live", "two": "live"}
    assert not any(rule.shadow for rule in rule_set.rules)


def test_a_rule_marked_shadow(load_one: Callable[[str], RuleSet]) -> None:
    rule_set = load_one(_rules(first="    mode: shadow\n"))
    assert _modes(rule_set) == {"one": "shadow", "two": "live"}
    assert rule_set.rules[0].shadow


def test_a_file_marked_shadow_marks_its_rules_and_a_rules_own_key_wins(
    load_one: Callable[[str], RuleSet],
) -> None:
    rule_set = load_one(_rules(top="mode: shadow\n", second="    mode: live\n"))
    assert _modes(rule_set) == {"one": "shadow", "two": "live"}


def test_a_files_mode_does_not_reach_other_files(write_rules: WriteRules) -> None:
    folder = write_rules(
        {
            "a.yml": "mode: shadow\nrules:\n  - {id: a, on: x}\n",
            "b.yml": "rules:\n  - {id: b, on: x}\n",
        }
    )
    assert _modes(load_rules(folder)) == {"a": "shadow", "b": "live"}


def test_promoting_is_one_edited_key(write_rules: WriteRules) -> None:
    folder = write_rules({"rules.yml": _rules(top="mode: shadow\n")})
    before = load_rules(folder)
    write_rules({"rules.yml": _rules(top="mode: live\n")})
    after = load_rules(folder)
    assert set(_modes(before).values()) == {"shadow"}
    assert set(_modes(after).values()) == {"live"}
    assert before.version != after.version  # the run history tells the two apart


@pytest.mark.parametrize(
    ("text", "where", "path", "message"),
    [
        pytest.param(
            _rules(first="    mode: shadw\n"),
            (4, 11),
            "rules[0].mode",
            "unknown mode 'shadw'; did you mean 'shadow'? (allowed: live, shadow)",
            id="rule-typo",
        ),
        pytest.param(
            _rules(second="    mode: dry-run\n"),
            (9, 11),
            "rules[1].mode",
            "unknown mode 'dry-run' (allowed: live, shadow)",
            id="rule-unknown",
        ),
        pytest.param(
            _rules(first="    mode: true\n"),
            (4, 11),
            "rules[0].mode",
            "expected one of live, shadow, got the boolean true",
            id="rule-boolean",
        ),
        pytest.param(
            _rules(first="    mode:\n"),
            (4, 5),
            "rules[0].mode",
            "expected one of live, shadow, got null",
            id="rule-empty",
        ),
        pytest.param(
            _rules(top="mode: Shadow\n"),
            (1, 7),
            "mode",
            "unknown mode 'Shadow'; did you mean 'shadow'?",
            id="file-typo",
        ),
        pytest.param(
            _rules(top="mode: [shadow]\n"),
            (1, 7),
            "mode",
            "expected one of live, shadow, got a list",
            id="file-list",
        ),
        pytest.param(
            _rules(top="mdoe: shadow\n"),
            (1, 1),
            "mdoe",
            "unknown top-level key 'mdoe'; did you mean 'mode'? (allowed: mode, rules)",
            id="file-key-typo",
        ),
    ],
)
def test_a_bad_mode_is_a_positioned_error(
    load_errors: Callable[..., list[Any]],
    text: str,
    where: tuple[int, int],
    path: str,
    message: str,
) -> None:
    errors = load_errors(text)
    assert len(errors) == 1, errors
    [error] = errors
    assert (error.line, error.column) == where, str(error)
    assert error.path == path
    assert message in error.message
    assert error.file.endswith("rules.yml")


def test_rules_test_says_which_rules_are_shadow(load_one: Callable[[str], RuleSet]) -> None:
    rule_set = load_one(_rules(first="    mode: shadow\n    stop: true\n"))
    body = {"event": "request.created", "request": {"id": "7"}}
    explanation = explain(rule_set, context_from_body(body))
    assert [(r.id, r.mode, r.runs) for r in explanation.rules] == [
        ("one", "shadow", True),
        # A shadow rule's `stop` is recorded, not obeyed: it never changes what live rules do.
        ("two", "live", True),
    ]
    assert "MATCH    one" in explanation.to_text()
    assert "[shadow: records what it would send]" in explanation.to_text()
    assert explanation.to_dict()["rules"][0]["mode"] == "shadow"
