"""The rule file format, as data: ids, event patterns and the schemas of a file, a rule
and a step (read by :mod:`rules._loader`)."""

from __future__ import annotations

from configfiles import (
    Boolean,
    Choice,
    Custom,
    Field,
    Integer,
    ListOf,
    OneOrList,
    Raw,
    Record,
    Text,
)
from rules._actions import ACTIONS
from rules._conditions import read_condition
from rules._model import MODES, ON_ERROR
from rules._schema import Templated

RULE_ID = r"[a-z0-9][a-z0-9_-]*"
STEP_ID = r"[a-z_][a-z0-9_]*"
EVENT_PATTERN = r"[A-Za-z0-9_.:*-]+"
CASE_SUFFIXES = (".case.yml", ".case.yaml")
MAX_FILE_BYTES = 2 * 1024 * 1024

# The rule format, as data. Conditions and `with` arguments have schemas of their own
# (the operator registry and the action catalogue).
ACTION_SCHEMA = Record(
    {
        "id": Field(
            Text(
                pattern=STEP_ID,
                hint="a step id is lowercase letters, digits and _, "
                "starting with a letter or _ (so that steps.<id> works in templates)",
            )
        ),
        "uses": Field(Choice(tuple(ACTIONS), what="action"), required=True),
        "with": Field(Raw()),
        "if": Field(Templated(Boolean(), native_only=True)),
        "on_error": Field(Choice(ON_ERROR, what="on_error value"), default="stop"),
    },
    what="step key",
)

RULE_SCHEMA = Record(
    {
        "id": Field(
            Text(
                pattern=RULE_ID,
                hint="a rule id is lowercase letters, digits, _ and "
                "-, starting with a letter or digit",
            ),
            required=True,
        ),
        "description": Field(Text(), default=""),
        "on": Field(
            OneOrList(
                Text(
                    pattern=EVENT_PATTERN,
                    hint="an event type such as request.created, or a glob such as request.*",
                )
            ),
            required=True,
        ),
        "order": Field(Integer(), default=100),
        "stop": Field(Boolean(), default=False),
        "enabled": Field(Boolean(), default=True),
        "on_own_writes": Field(Boolean(), default=False),
        # None: the file's `mode` (a rule's own key wins).
        "mode": Field(Choice(MODES, what="mode")),
        "cancel_waits_on": Field(
            OneOrList(
                Text(
                    pattern=EVENT_PATTERN,
                    hint="an event type such as request.updated, or a glob such as request.*",
                )
            ),
            default=(),
        ),
        "when": Field(Custom(read_condition, expected="a condition")),
        "actions": Field(ListOf(Raw()), default=()),
    },
    what="rule key",
)

FILE_SCHEMA = Record(
    {
        "mode": Field(Choice(MODES, what="mode"), default="live"),
        "rules": Field(ListOf(Raw()), required=True),
    },
    what="top-level key",
)
