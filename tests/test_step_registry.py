"""The worker's step registry and the rules' action catalogue are one set of names."""

from __future__ import annotations

from rules import ACTIONS
from worker.steps import STEPS
from worker.waiting import WAIT


def test_every_catalogue_action_has_a_step_and_every_step_an_entry() -> None:
    # `wait` is run by the event processing itself (worker/waiting.py): it needs the database.
    run = set(STEPS) | {WAIT}
    assert WAIT not in STEPS
    assert run == set(ACTIONS), (
        f"only in the catalogue: {sorted(set(ACTIONS) - run)}; "
        f"only in the worker: {sorted(run - set(ACTIONS))}"
    )
