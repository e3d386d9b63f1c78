"""`wait` steps in a rule run: start a wait, resume the rule after it, cancel by newer events.

The wait itself is a row of the ``waits`` table (:mod:`deskwire.wait_store`); the sweeper
fires it when due by queueing its event again, and that run resumes the rule here. The
rule's earlier steps are recorded as succeeded, so they are not repeated, and their outputs
(``steps.<id>``) come from the run history.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from deskwire import wait_store
from deskwire.tables import Event, WaitState, utcnow
from rules import Action, RuleSet
from worker import enrichment, history
from worker.errors import StepFailed
from worker.steps import Clients, StepResult

log = logging.getLogger(__name__)

WAIT = "wait"  # the one action run here rather than by worker.steps (it needs the database)


class RuleHalted(Exception):
    """The rule stops at a `wait` step: ``outcome`` and ``detail`` go to its history."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


def _when(moment: Any) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def at_wait(
    sessions: sessionmaker[Session],
    clients: Clients,
    event: Event,
    rule_id: str,
    action: Action,
    index: int,
    context: Mapping[str, Any],
    journal: history.Journal,
) -> StepResult:
    """Run a `wait` step: start the wait, or go past it once it has fired.

    Raises :class:`RuleHalted` while the wait waits, once it was cancelled, and when its
    `until` no longer holds. Past a fired wait the step's output ``json`` is the request
    as re-read for `until` (``None`` without `until`).
    """
    found = wait_store.find(sessions, event.id, rule_id, action.id)
    record = partial(
        history.record_step, event_pk=event.id, rule_id=rule_id, step_id=action.id, uses=WAIT
    )
    if found is None:
        due = utcnow() + timedelta(seconds=int(action.args["duration"]))
        journal.add(partial(
            wait_store.add_wait, event_pk=event.id, rule_id=rule_id, step_id=action.id,
            step_index=index, source=event.source, request_id=event.request_id, due_at=due,
        ))  # fmt: skip
        journal.add(partial(record, status=wait_store.RULE_WAITING, error=f"until {_when(due)}"))
        raise RuleHalted(wait_store.RULE_WAITING, f"waiting at step {action.id} until {_when(due)}")
    if found.state == WaitState.WAITING:
        raise RuleHalted(
            wait_store.RULE_WAITING,
            f"waiting at step {action.id} (wait {found.id}) until {_when(found.due_at)}",
        )
    if found.state == WaitState.CANCELLED:
        raise RuleHalted(
            wait_store.RULE_CANCELLED,
            f"wait {found.id} (step {action.id}) cancelled by {found.cancelled_by}; "
            "the rest did not run",
        )
    if found.state == WaitState.SKIPPED:
        raise RuleHalted("done", f"{found.cancelled_by}; the rest of the rule was skipped")
    fresh: dict[str, Any] | None = None
    if action.until is not None:
        if not event.request_id:
            raise StepFailed("`until` reads the request again, and this event names none")
        fresh = enrichment.fetch_request(clients, event.source, event.request_id)
        verdict = action.until_holds({**context, "request": fresh})
        if not verdict.matched:
            reason = f"`until` no longer held when wait {found.id} ended: {verdict.reason}"
            journal.add(partial(wait_store.mark_skipped, wait_id=found.id, reason=reason))
            journal.add(partial(record, status="skipped", error=reason))
            log.info("event %s rule %s: %s", event.id, rule_id, reason)
            raise RuleHalted("done", f"{reason}; the rest of the rule was skipped")
    return StepResult({"status": 0, "json": fresh, "text": "", "headers": {}})


def cancel_by_newer_event(
    sessions: sessionmaker[Session], event: Event, rule_set: RuleSet, *, own: bool
) -> list[int]:
    """Cancel the waits that this event's type cancels (`cancel_waits_on`) for its request.

    Only waits of earlier events about the same request; an echo of deskwire's own write
    cancels nothing (a rule's own note must not end its own wait). Returns the wait ids.
    """
    if own or not event.request_id:
        return []
    rule_ids = [
        rule.id
        for rule in rule_set.rules
        if rule.cancel_waits_on and rule.cancels_waits_on(event.event_type)
    ]
    if not rule_ids:
        return []
    cancelled = wait_store.cancel_for_event(
        sessions,
        event_pk=event.id,
        event_type=event.event_type,
        source=event.source,
        request_id=event.request_id,
        rule_ids=rule_ids,
    )
    if cancelled:
        log.info("event %s cancelled wait(s) %s of request %s", event.id, cancelled,
                 event.request_id)  # fmt: skip
    return cancelled


def end_unloaded_rules(
    sessions: sessionmaker[Session],
    event: Event,
    before: Mapping[str, str],
    visited: set[str],
    journal: history.Journal,
) -> None:
    """Record the end of rules whose wait fired but that this run did not reach.

    The rule was removed, disabled or no longer listens to the event's type (or a `stop`
    rule now comes first): the rest of it cannot run, and the history says so rather than
    keeping "waiting" forever.
    """
    left = {rule_id for rule_id, outcome in before.items() if outcome == "waiting"} - visited
    if not left:
        return
    for wait in wait_store.list_waits(sessions, states=(WaitState.FIRED,), event_pk=event.id):
        if wait.rule_id not in left:
            continue
        detail = (
            f"wait {wait.id} fired, but the rule no longer runs on {event.event_type} events "
            "(removed, disabled, its `on` changed or a `stop` rule comes first); the rest of "
            "the rule did not run"
        )
        log.warning("event %s rule %s: %s", event.id, wait.rule_id, detail)
        journal.add(partial(
            history.record_rule, event_pk=event.id, rule_id=wait.rule_id, matched=True,
            outcome=wait_store.RULE_CANCELLED, detail=detail,
        ))  # fmt: skip
