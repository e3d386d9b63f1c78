"""docs/sdp.md shows every SDP call of the operations table, with its alternates."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdp import OPERATIONS

DOCS = (Path(__file__).parents[1] / "docs" / "sdp.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_operation_in_the_table(name: str) -> None:
    operation = OPERATIONS[name]
    assert f"`{operation.method} {operation.path}`" in DOCS, f"add {name} to docs/sdp.md"
    for alternate in operation.alternates:
        assert f"`{alternate}`" in DOCS
