"""The config engine on its own: a schema as data checked against YAML, every error at once."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from configfiles import (
    INVALID,
    Boolean,
    Choice,
    Field,
    Integer,
    InvalidConfig,
    ListOf,
    Record,
    Report,
    Text,
    is_link_name,
    parse_duration,
    parse_yaml,
)


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"


class ProblemReport(Report[Problem]):
    def located(self, line: int, column: int, path: str, message: str) -> Problem:
        return Problem(self.file, line, column, path, message)


ITEM = Record(
    {
        "name": Field(Text(pattern=r"[a-z]+", hint="lower-case letters"), required=True),
        "size": Field(Integer(minimum=1), default=1),
        "kind": Field(Choice(("small", "large"), what="kind")),
    },
    what="item key",
)
SCHEMA = Record({"items": Field(ListOf(ITEM), required=True), "on": Field(Boolean())})


def check(text: str) -> tuple[object, list[Problem]]:
    report = ProblemReport("f.yml")
    node = parse_yaml(text)
    assert node is not None
    return SCHEMA.check(node, (), report), report.errors


def test_a_valid_file_gives_its_values_with_defaults() -> None:
    values, errors = check("items:\n  - {name: a, kind: large}\n")
    assert errors == []
    assert values == {"items": ({"name": "a", "size": 1, "kind": "large"},), "on": None}


def test_every_error_is_reported_at_once_with_position_and_key_path() -> None:
    text = (
        "items:\n"
        "  - name: A\n"  # bad pattern, at the value
        "    size: 0\n"  # out of range
        "  - kind: smal\n"  # unknown choice; missing name (at the item)
        "    colour: red\n"  # unknown key, at the key
        "on: yes\n"  # YAML 1.2: text, not a boolean
        "items: []\n"  # duplicate key
    )
    _, errors = check(text)
    found = [str(error) for error in InvalidConfig(errors, "test files").errors]
    assert found == [
        "f.yml:2:11: items[0].name: 'A' is not valid: lower-case letters",
        "f.yml:3:11: items[0].size: 0 is out of range: from 1 to …",
        "f.yml:4:5: items[1]: missing required item key 'name'",
        "f.yml:4:11: items[1].kind: unknown kind 'smal'; did you mean 'small'? "
        "(allowed: small, large)",
        "f.yml:5:5: items[1].colour: unknown item key 'colour' (allowed: name, size, kind)",
        "f.yml:6:5: on: expected true or false, got the text 'yes'",
        "f.yml:7:1: items: duplicate key 'items'",
    ]


def test_the_summary_counts_the_errors() -> None:
    _, errors = check("{}\n")
    assert str(InvalidConfig(errors, "test files")).splitlines() == [
        "1 error in test files:",
        "  f.yml:1:1: : missing required key 'items'",
    ]


def test_a_wrong_type_says_what_was_expected_and_found() -> None:
    values, errors = check("items: {name: a}\n")
    assert values["items"] is INVALID  # type: ignore[index]
    assert [e.message for e in errors] == ["expected a list, got a mapping"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), (" 30m ", 1800), ("2 h", 7200), ("1d", 86400), (45, 45)],
)
def test_durations_with_bare_seconds(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("30x", "'30x' is not a duration; write e.g. 90s, 30m, 2h or 1d"),
        ("-5d", "'-5d' is not a duration"),
        ("", "'' is not a duration"),
        (None, "None is not a duration"),
        (True, "expected a duration such as 90s"),
    ],
)
def test_bad_durations_say_how_to_write_one(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(value)


@pytest.mark.parametrize("value", ["90", 90, "5 "])
def test_a_unit_can_be_required(value: object) -> None:
    with pytest.raises(ValueError, match=r"needs a unit; write e\.g\. 90s"):
        parse_duration(value, unit_required=True)
    assert parse_duration("5m", unit_required=True) == 300


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("pd", True),
        ("a" + "b" * 49, True),
        ("a" + "b" * 50, False),
        ("9pd", False),
        ("Pd", False),
        ("p-d", False),
        ("pd\n", False),
        (5, False),
    ],
)
def test_one_link_name_rule(name: object, ok: bool) -> None:
    assert is_link_name(name) is ok
