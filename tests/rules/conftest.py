"""Fixtures for the rule-language tests: rule folders built in tmp_path, sample contexts."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rules import RuleLoadError, RuleSet, load_rules

DATA = Path(__file__).parent / "data"

WriteRules = Callable[..., Path]


@pytest.fixture
def write_rules(tmp_path: Path) -> WriteRules:
    """Write files (name → YAML text, dedented) into a fresh rules folder; return it."""
    folder = tmp_path / "rules"
    folder.mkdir()

    def write(files: dict[str, str] | None = None, /, **named: str) -> Path:
        for name, text in {**(files or {}), **named}.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        return folder

    return write


@pytest.fixture
def load_one(write_rules: WriteRules) -> Callable[[str], RuleSet]:
    """Load a single rules file given as YAML text."""

    def load(text: str, connections: set[str] | None = None) -> RuleSet:
        return load_rules(write_rules({"rules.yml": text}), connections=connections)

    return load


@pytest.fixture
def load_errors(write_rules: WriteRules) -> Callable[..., list[Any]]:
    """Load a rules file that must be invalid; return its errors."""

    def errors(text: str, connections: set[str] | None = None) -> list[Any]:
        folder = write_rules({"rules.yml": text})
        with pytest.raises(RuleLoadError) as caught:
            load_rules(folder, connections=connections)
        return list(caught.value.errors)

    return errors


def rule_yaml(when: str = "", actions: str = "", extra: str = "") -> str:
    """One rule with the given `when` / `actions` blocks (already indented by 4)."""
    text = "rules:\n  - id: r1\n    on: request.created\n"
    if extra:
        text += extra
    if when:
        text += "    when:\n" + textwrap.indent(textwrap.dedent(when), "      ")
    if actions:
        text += "    actions:\n" + textwrap.indent(textwrap.dedent(actions), "      ")
    return text


@pytest.fixture
def context() -> dict[str, Any]:
    """A typical evaluation context: an SDP request created event."""
    return {
        "event": {"type": "request.created", "id": "e1", "source": "sdp", "received_at": "now"},
        "request": {
            "id": "123",
            "subject": "Mail outage in HQ",
            "priority": {"name": "High"},
            "requester": {"email_id": "ceo@example.com", "is_vip_user": True},
            "status": {"name": "Open"},
            "site": None,
            "tags": ["mail", "P1"],
            "created_time": {"value": "1700000000000", "display_value": "Nov 14, 2023"},
        },
        "payload": {"event": "request.created"},
        "previous": None,
        "steps": {},
    }
