"""docs/rules.md documents every operator and every action of the registries."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules import ACTIONS, OPERATORS

DOCS = (Path(__file__).parents[2] / "docs" / "rules.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_operator_documented(name):
    assert f"### `{name}`" in DOCS, f"add a '### `{name}`' section to docs/rules.md"


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_action_documented(name):
    section = f"### `{name}`"
    assert section in DOCS, f"add a '{section}' section to docs/rules.md"
    body = DOCS.split(section, 1)[1].split("\n### ", 1)[0]
    for arg in ACTIONS[name].args:
        assert f"`{arg}`" in body, f"document the argument {arg!r} of {name} in docs/rules.md"
