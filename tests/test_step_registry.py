"""The worker's step registry and the rules' action catalogue are one set of names."""

from __future__ import annotations

from rules import ACTIONS
from worker.steps import STEPS


def test_every_catalogue_action_has_a_step_and_every_step_an_entry() -> None:
    assert set(STEPS) == set(ACTIONS), (
        f"only in the catalogue: {sorted(set(ACTIONS) - set(STEPS))}; "
        f"only in the worker: {sorted(set(STEPS) - set(ACTIONS))}"
    )
