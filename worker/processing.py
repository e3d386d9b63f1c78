"""Processing one event: claim → build context → match rules → run steps → record.

This is the enforcer of the pipeline (loader and matcher live in ``rules``). It returns
an :class:`Outcome`; the Celery task turns that into done, a retry or a dead letter.
Steps that succeeded are recorded one by one and never run again for the same event,
so a retry or a replay after a crash repeats no effect.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import redis
from sqlalchemy.orm import Session, sessionmaker

from deskwire import event_store
from deskwire.settings import Settings
from deskwire.tables import Event, EventStatus
from deskwire.webhook_payload import request_view
from rules import Rule, RuleLoadError, RuleSet, TemplateError
from worker import history, own_writes
from worker.errors import StepFailed, StepRetry
from worker.steps import Clients, StepCall, run_step

log = logging.getLogger(__name__)

# Keys a payload's request may have that still leave it "ids only".
ID_KEYS = frozenset({"id", "display_id", "request_id"})


class RuleSource(Protocol):
    """The current rule set, reloaded when the files change."""

    def current(self) -> RuleSet:
        """The last good rule set."""


@dataclass
class Runtime:
    """What processing needs, composed once per worker process."""

    settings: Settings
    sessions: sessionmaker[Session]
    rules: RuleSource
    clients: Clients
    redis: redis.Redis


@dataclass
class Outcome:
    """How processing ended."""

    kind: Literal["done", "failed", "retry", "blocked", "skipped"]
    error: str | None = None
    retry_after: float | None = None
    ruleset_version: str | None = None


def _request_from_payload(payload: Mapping[str, Any], request_id: str | None) -> dict[str, Any]:
    # Nested, flat and on-premises payloads all reach rules as ``request.<field>``.
    return request_view(payload, request_id)


def _needs_fetch(request: Mapping[str, Any], request_id: str | None) -> bool:
    return bool(request_id) and set(request) <= ID_KEYS


def event_inputs(
    runtime: Runtime, event: Event, rule_set: RuleSet
) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
    """The request, the previous state and the own-write decision, fixed on the first run.

    Retries and replays evaluate against the same inputs: re-reading the request would
    show the first try's own writes and change which rules match.
    """
    if event.request_snapshot is not None:
        return event.request_snapshot, event.previous_snapshot, bool(event.caused_by_deskwire)
    request = _request_from_payload(event.payload, event.request_id)
    if _needs_fetch(request, event.request_id) and rule_set.for_event(event.event_type):
        # Payloads often carry only ids: read the whole request once, before matching.
        request = _fetch_request(runtime, event)
    previous = history.previous_state(runtime.sessions, event.source, event.request_id)
    own = own_writes.caused_by_deskwire(
        runtime.redis,
        source=event.source,
        request_id=event.request_id,
        payload=event.payload,
        request=request,
        previous=previous,
        window=runtime.settings.own_write_window,
    )
    history.freeze_inputs(runtime.sessions, event.id, request, previous, own)
    if event.request_id and request and not _needs_fetch(request, event.request_id):
        history.save_state(runtime.sessions, event.source, event.request_id, request)
    return request, previous, own


def build_context(
    event: Event, request: dict[str, Any], previous: dict[str, Any] | None, own: bool
) -> dict[str, Any]:
    """The template/condition context of an event."""
    return {
        "event": {
            "type": event.event_type,
            "id": event.event_id,
            "source": event.source,
            "received_at": event.received_at.isoformat(),
            "caused_by_deskwire": own,
        },
        "request": request,
        "payload": event.payload,
        "previous": previous,
        "steps": {},
        "rule": {},
    }


def _fetch_request(runtime: Runtime, event: Event) -> dict[str, Any]:
    assert event.request_id is not None
    call = StepCall("sdp.get_request", {"request_id": event.request_id}, event.source)
    try:
        result = run_step(runtime.clients, call)
    except StepFailed as exc:
        raise StepFailed(
            f"the webhook carries only request id {event.request_id} and reading the request "
            f"from SDP failed: {exc}"
        ) from None
    request = result.outputs.get("json")
    return dict(request) if isinstance(request, dict) else {"id": event.request_id}


def _why_not_claimed(runtime: Runtime, event_pk: int) -> Outcome:
    with runtime.sessions() as session:
        event = session.get(Event, event_pk)
        if event is None:
            return Outcome("skipped", f"event {event_pk} does not exist")
        if event.status in (EventStatus.DONE, EventStatus.FAILED):
            return Outcome("skipped", f"event {event_pk} is already {event.status}")
        earlier = event_store.earlier_unfinished(session, event)
    if earlier is not None:
        return Outcome("blocked", f"waits for earlier event {earlier} about the same request")
    # Another delivery holds it; if that one's worker died, the claim goes stale and this
    # delivery takes over, so nothing is dropped.
    return Outcome(
        "blocked", f"event {event_pk} is being processed by another delivery", retry_after=5.0
    )


def process_event(runtime: Runtime, event_pk: int, *, claimer: str) -> Outcome:
    """Process one stored event to a recorded outcome; ``claimer`` is the task delivery id."""
    stale_after = runtime.settings.task_time_limit + 30
    if not event_store.claim(runtime.sessions, event_pk, claimer=claimer, stale_after=stale_after):
        return _why_not_claimed(runtime, event_pk)
    with runtime.sessions() as session:
        event = session.get(Event, event_pk)
        assert event is not None
        session.expunge(event)
    try:
        rule_set = runtime.rules.current()
    except RuleLoadError as exc:
        return Outcome("retry", f"the rules cannot be loaded: {exc}")
    try:
        outcome = _run_rules(runtime, event, rule_set)
    except StepRetry as exc:
        outcome = Outcome("retry", str(exc), exc.retry_after)
    except StepFailed as exc:
        outcome = Outcome("failed", str(exc))
    outcome.ruleset_version = rule_set.version
    return outcome


def _run_rules(runtime: Runtime, event: Event, rule_set: RuleSet) -> Outcome:
    request, previous, own = event_inputs(runtime, event, rule_set)
    context = build_context(event, request, previous, own)
    before = history.rule_outcomes(runtime.sessions, event.id)
    failures: list[str] = []
    for rule in rule_set.for_event(event.event_type):
        if before.get(rule.id) in ("done", "stopped"):
            if rule.stop:
                break
            continue
        # A rule that matched on an earlier try resumes its steps without a new verdict.
        if before.get(rule.id) not in ("running", "failed"):
            reason = _why_not(rule, context, own)
            if reason is not None:
                history.record_rule(
                    runtime.sessions, event.id, rule.id, matched=False,
                    outcome="not_matched", detail=reason,
                )  # fmt: skip
                continue
            history.record_rule(
                runtime.sessions, event.id, rule.id, matched=True, outcome="running", detail=None
            )
        error = _run_actions(runtime, event, rule, context)
        outcome = "failed" if error else ("stopped" if rule.stop else "done")
        history.record_rule(
            runtime.sessions, event.id, rule.id, matched=True, outcome=outcome, detail=error
        )
        if error:
            failures.append(f"rule {rule.id}: {error}")
        if rule.stop:
            break
    if failures:
        return Outcome("failed", "; ".join(failures))
    return Outcome("done")


def _why_not(rule: Rule, context: Mapping[str, Any], own: bool) -> str | None:
    """Why a rule does not match, or ``None`` when it does."""
    if own and not rule.on_own_writes:
        return "event caused by deskwire's own write (set on_own_writes: true to match)"
    verdict = rule.evaluate(context)
    return None if verdict.matched else (verdict.reason or "conditions not met")


def _run_actions(runtime: Runtime, event: Event, rule: Rule, base: dict[str, Any]) -> str | None:
    """Run a matched rule's steps; return the error that ended it, or ``None``."""
    steps: dict[str, Any] = history.succeeded_steps(runtime.sessions, event.id, rule.id)
    context = {**base, "steps": steps, "rule": {"id": rule.id, "description": rule.description}}
    first_error: str | None = None
    for action in rule.actions:
        if action.id in steps:
            continue  # succeeded in an earlier try: effectively once
        try:
            if not action.should_run(context):
                history.record_step(
                    runtime.sessions, event.id, rule.id, action.id, uses=action.uses,
                    status="skipped", error="`if` was false",
                )  # fmt: skip
                continue
            args = action.render(context)
            call = StepCall(action.uses, args, event.source, _acting_user(context))
            result = run_step(runtime.clients, call)
        except StepRetry as exc:
            history.record_step(
                runtime.sessions, event.id, rule.id, action.id, uses=action.uses,
                status="retrying", error=str(exc),
            )  # fmt: skip
            raise
        except (StepFailed, TemplateError) as exc:
            message = f"step {action.id} ({action.uses}): {exc}"
            history.record_step(
                runtime.sessions, event.id, rule.id, action.id, uses=action.uses,
                status="failed", error=str(exc),
            )  # fmt: skip
            log.warning("event %s rule %s: %s", event.id, rule.id, message)
            first_error = first_error or message
            if action.on_error == "continue":
                continue
            return first_error
        history.record_step(
            runtime.sessions, event.id, rule.id, action.id, uses=action.uses,
            status="succeeded", output=result.outputs,
        )  # fmt: skip
        steps[action.id] = result.outputs
        if result.wrote_request:
            own_writes.remember_write(
                runtime.redis,
                event.source,
                result.wrote_request,
                window=runtime.settings.own_write_window,
                note_text=result.wrote_note,
                fields=result.wrote_fields,
            )
    return first_error


def _acting_user(context: Mapping[str, Any]) -> str | None:
    """The technician of the request, for per-user connections."""
    technician = context.get("request", {}).get("technician")
    if isinstance(technician, dict):
        email = technician.get("email_id")
        return str(email) if email else None
    return None
