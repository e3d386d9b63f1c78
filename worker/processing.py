"""Processing one event: claim → build context → match rules → run steps → record.

This is the enforcer of the pipeline (loader and matcher live in ``rules``). It returns
an :class:`Outcome`; the Celery task turns that into done, a retry or a dead letter.
Steps that succeeded are recorded one by one and never run again for the same event,
so a retry or a replay after a crash repeats no effect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol

import redis
from sqlalchemy.orm import Session, sessionmaker

from deskwire import event_claim
from deskwire.log_context import bound
from deskwire.metrics_store import MetricsStore
from deskwire.settings import Settings
from deskwire.tables import REQUEST_ID, Event, EventStatus
from rules import Rule, RuleLoadError, RuleSet, TemplateError
from sdp.request_shapes import (
    about_a_request,
    epoch_ms,
    ids_only,
    last_updated_time,
    request_in_payload,
)
from worker import enrichment, history, own_writes, shadow, waiting
from worker.errors import StepFailed, StepRetry
from worker.lease_renewal import LeaseRenewer
from worker.request_state import decide_identity
from worker.steps import Clients, StepCall, run_step

log = logging.getLogger(__name__)


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
    # Renews the leases of this process's runs (one thread for all of them).
    leases: LeaseRenewer = field(init=False)

    def __post_init__(self) -> None:
        self.leases = LeaseRenewer(self.sessions, self.settings.lease_seconds)


@dataclass
class Outcome:
    """How processing ended."""

    kind: Literal["done", "failed", "retry", "blocked", "skipped", "duplicate"]
    error: str | None = None
    retry_after: float | None = None
    ruleset_version: str | None = None


@dataclass(frozen=True)
class Run:
    """One run of an event: the event and its request's saved state, read before the
    claim, and the claim (made by the run's first transaction)."""

    event: Event
    request_state: dict[str, Any] | None
    claim: event_claim.Claim


@dataclass(frozen=True)
class Inputs:
    """What the rules of an event see, fixed on its first run."""

    request: dict[str, Any]
    previous: dict[str, Any] | None
    own: bool
    # Set when the event repeats an earlier one: nothing runs, the reason is recorded.
    duplicate: str | None = None


def event_inputs(runtime: Runtime, run: Run, rule_set: RuleSet, journal: history.Journal) -> Inputs:
    """The request, the previous state and the own-write decision, fixed on the first run.

    The request is the body's, normalised (:mod:`sdp.request_shapes`); when it lacks
    fields the rules read, or the duplicate decision needs its ``last_updated_time``, it is
    read from SDP once. Retries and replays evaluate against the same inputs: re-reading the request
    would show the first try's own writes and change which rules match.
    """
    event = run.event
    if event.request_snapshot is not None:
        return Inputs(
            event.request_snapshot, event.previous_snapshot, bool(event.caused_by_deskwire)
        )
    rules = rule_set.for_event(event.event_type)
    listening = bool(rules)
    request_id = event.request_id
    read_with_event = request_id is not None  # its request's state came with it
    request = request_in_payload(event.payload, event_type=event.event_type, request_id=request_id)
    if request_id is None and about_a_request(event.event_type, event.payload):
        journal.flush()  # the claim, before SDP may be asked for the id
        request_id = _request_id_in(runtime, event, request, resolve=listening)
        if request_id is not None:
            history.set_request_id(runtime.sessions, event.id, request_id)
            event.request_id = request_id
            request["id"] = request_id
    lut = last_updated_time(event.payload, request)
    origin = "the body" if lut is not None else f"no rule listens to {event.event_type}"
    lacking = _fields_lacking(request, rules)
    wants_fields = request_id is not None and bool(lacking)
    wants_time = listening and not event.explicit_id and request_id is not None and lut is None
    if request_id is not None and (wants_fields or wants_time):
        journal.flush()  # the claim, before SDP is asked
        try:
            fetched = enrichment.fetch_request(runtime.clients, event.source, request_id)
        except StepFailed as exc:
            if ids_only(request):
                raise StepFailed(
                    f"the webhook carries only request id {request_id} and reading the request "
                    f"from SDP failed: {exc}"
                ) from None
            # The body has fields of its own: the rules run on those; one that needs a
            # missing field does not match and its reason names the field.
            log.warning(
                "event %s: the body lacks request fields the rules read (%s) and reading "
                "request %s from SDP failed: %s",
                event.id, lacking, request_id, exc,
            )  # fmt: skip
            fetched, origin = {}, f"no last_updated_time in the body, and reading it failed: {exc}"
        else:
            origin = "neither the body nor SDP's request has a last_updated_time (epoch ms)"
        # The body describes the event: its fields win over the state read now.
        request = {**fetched, **request}
        if lut is None and (lut := epoch_ms(fetched.get("last_updated_time"))) is not None:
            origin = "SDP"
    identity = decide_identity(
        runtime.sessions,
        event,
        request_id=request_id,
        last_updated_time=lut,
        origin=origin,
        window=runtime.settings.dedupe_window,
    )
    if identity.duplicate_of is not None:
        # Stored with the claim, or with the final status when the claim was made before.
        journal.add(partial(history.record_identity, event_pk=event.id, identity=identity.note))
        return Inputs(request, None, False, duplicate=identity.note)
    previous = run.request_state  # read with the event
    if not read_with_event:  # its request id was found only now
        previous = history.previous_state(runtime.sessions, event.source, request_id)
    own = own_writes.caused_by_deskwire(
        runtime.redis,
        source=event.source,
        request_id=request_id,
        payload=event.payload,
        request=request,
        previous=previous,
        window=runtime.settings.own_write_window,
    )
    frozen = event_claim.FrozenInputs(request, previous, own, identity.note)
    if run.claim.made:  # its transaction is behind: a write of its own
        journal.add(partial(event_claim.freeze_in, pk=event.id, inputs=frozen))
    else:
        run.claim.inputs = frozen  # set by the claim's UPDATE
    if request_id and request and not ids_only(request):
        journal.add(partial(history.save_state, source=event.source, request_id=request_id,
                            state=request, known=previous))  # fmt: skip
    return Inputs(request, previous, own)


def _fields_lacking(request: dict[str, Any], rules: tuple[Rule, ...]) -> str:
    """Which request fields the rules read that the body lacks ("" when it has them all)."""
    if not rules:
        return ""
    if ids_only(request):
        return "all"
    lacking: set[str] = set()
    for rule in rules:
        read = rule.fields_read("request")
        if read is None:
            return "the whole request"
        lacking |= read - set(request)
    return ", ".join(sorted(lacking))


def _request_id_in(
    runtime: Runtime, event: Event, request: dict[str, Any], *, resolve: bool
) -> str | None:
    """The request id of a body whose shape ingest did not read it from (``requestObj``,
    upper-case keys), or the id SDP has for its ``display_id`` when ``resolve`` is set."""
    found = request.get("id")
    if isinstance(found, str) and REQUEST_ID.match(found):
        return found
    display_id = request.get("display_id")
    if resolve and isinstance(display_id, str) and display_id:
        # The body names the request by the number people see: find its internal id.
        return enrichment.resolve_display_id(runtime.clients, event.source, display_id)
    return None


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
            # Made by reconciliation: SDP listed the change, no webhook of it was seen.
            "reconciled": bool(event.reconciled),
        },
        "request": request,
        "payload": event.payload,
        "previous": previous,
        "steps": {},
        "rule": {},
    }


def _why_not_claimed(runtime: Runtime, event_pk: int) -> Outcome:
    with runtime.sessions() as session:
        event = session.get(Event, event_pk)
        if event is None:
            return Outcome("skipped", f"event {event_pk} does not exist")
        if event.status in (EventStatus.DONE, EventStatus.FAILED, EventStatus.DUPLICATE):
            return Outcome("skipped", f"event {event_pk} is already {event.status}")
        earlier = event_claim.earlier_unfinished(session, event)
    if earlier is not None:
        return Outcome("blocked", f"waits for earlier event {earlier} about the same request")
    # Another delivery holds it; if that one's worker died, its lease lapses and this
    # delivery (or the sweeper's) takes over, so nothing is dropped.
    return Outcome(
        "blocked", f"event {event_pk} is being processed by another delivery", retry_after=5.0
    )


def process_event(
    runtime: Runtime, event_pk: int, *, claimer: str, journal: history.Journal
) -> Outcome:
    """Process one stored event to an outcome; ``claimer`` is the task delivery id.

    The run history goes to ``journal``; what is still queued there at the end is for the
    caller to store with the event's final status (one transaction).
    """
    # Read now with its request's saved state; claimed by the journal's first transaction,
    # whose one commit also holds the frozen inputs and the first records. It is flushed
    # before anything calls out: an event is claimed (leased) before any effect.
    found = event_claim.claimable(runtime.sessions, event_pk)
    if found is None:
        return _why_not_claimed(runtime, event_pk)
    claim = event_claim.Claim(event_pk, claimer, runtime.settings.lease_seconds)
    journal.add(claim)
    try:
        outcome = _claimed_run(runtime, Run(found.event, found.request_state, claim), journal)
        if journal.flushes == 0:
            journal.flush()  # nothing called out: claim now, the final status commits next
    except event_claim.NotClaimed:
        return _why_not_claimed(runtime, event_pk)  # another delivery claimed it meanwhile
    except BaseException:
        if journal.flushes == 0:  # a crash before the claim: claim now, or say who holds it
            try:
                journal.flush()
            except event_claim.NotClaimed:
                log.warning("event %s: run ended early and another delivery holds it", event_pk)
                return _why_not_claimed(runtime, event_pk)
        raise
    return outcome


def _claimed_run(runtime: Runtime, run: Run, journal: history.Journal) -> Outcome:
    try:
        rule_set = runtime.rules.current()
    except RuleLoadError as exc:
        return Outcome("retry", f"the rules cannot be loaded: {exc}")
    try:
        outcome = _run_rules(runtime, run, rule_set, journal)
    except StepRetry as exc:
        outcome = Outcome("retry", str(exc), exc.retry_after)
    except StepFailed as exc:
        outcome = Outcome("failed", str(exc))
    outcome.ruleset_version = rule_set.version
    return outcome


def _run_rules(runtime: Runtime, run: Run, rule_set: RuleSet, journal: history.Journal) -> Outcome:
    event = run.event
    inputs = event_inputs(runtime, run, rule_set, journal)
    if inputs.duplicate is not None:
        return Outcome("duplicate", inputs.duplicate)
    own = inputs.own
    waiting.cancel_by_newer_event(runtime.sessions, event, rule_set, own=own)
    context = build_context(event, inputs.request, inputs.previous, own)
    # An event never claimed before has no history yet: nothing to read back.
    first_run = event.started_at is None
    before = {} if first_run else history.rule_outcomes(runtime.sessions, event.id)
    failures: list[str] = []
    visited: set[str] = set()
    for rule in rule_set.for_event(event.event_type):
        visited.add(rule.id)
        with bound(rule=rule.id):
            if before.get(rule.id) in ("done", "stopped", "cancelled"):
                if rule.stop and not rule.shadow:
                    break
                continue
            # A rule that matched on an earlier try (or waits) resumes its steps without a
            # new verdict.
            if before.get(rule.id) not in ("running", "failed", "waiting"):
                reason = _why_not(rule, context, own)
                if reason is not None:
                    journal.add(partial(
                        history.record_rule, event_pk=event.id, rule_id=rule.id, matched=False,
                        outcome="not_matched", detail=reason, shadow=rule.shadow,
                    ))  # fmt: skip
                    continue
                journal.add(partial(
                    history.record_rule, event_pk=event.id, rule_id=rule.id, matched=True,
                    outcome="running", detail=None, shadow=rule.shadow,
                ))  # fmt: skip
            try:
                error = _run_actions(runtime, event, rule, context, journal, first_run=first_run)
            except waiting.RuleHalted as halt:  # at a `wait` step: see worker/waiting.py
                journal.add(partial(
                    history.record_rule, event_pk=event.id, rule_id=rule.id, matched=True,
                    outcome=halt.outcome, detail=halt.detail,
                ))  # fmt: skip
                if rule.stop:
                    break
                continue
            outcome = "failed" if error else ("stopped" if rule.stop else "done")
            journal.add(partial(
                history.record_rule, event_pk=event.id, rule_id=rule.id, matched=True,
                outcome=outcome, detail=error, shadow=rule.shadow,
            ))  # fmt: skip
            if rule.shadow:
                continue  # recorded only: it neither fails the event nor stops live rules
            if error:
                failures.append(f"rule {rule.id}: {error}")
            if rule.stop:
                break
    waiting.end_unloaded_rules(runtime.sessions, event, before, visited, journal)
    if failures:
        return Outcome("failed", "; ".join(failures))
    return Outcome("done")


def _why_not(rule: Rule, context: Mapping[str, Any], own: bool) -> str | None:
    """Why a rule does not match, or ``None`` when it does."""
    if own and not rule.on_own_writes:
        return "event caused by deskwire's own write (set on_own_writes: true to match)"
    verdict = rule.evaluate(context)
    return None if verdict.matched else (verdict.reason or "conditions not met")


def _run_actions(
    runtime: Runtime,
    event: Event,
    rule: Rule,
    base: dict[str, Any],
    journal: history.Journal,
    *,
    first_run: bool = False,
) -> str | None:
    """Run a matched rule's steps; return the error that ended it, or ``None``.

    The journal is flushed before each step calls out: whatever was decided or done so far
    (this rule's "running", the previous step's success) is durable before a new effect.
    """
    steps: dict[str, Any] = (
        {} if first_run else history.succeeded_steps(runtime.sessions, event.id, rule.id)
    )
    context = {**base, "steps": steps, "rule": {"id": rule.id, "description": rule.description}}
    if rule.shadow:
        call_for = partial(_step_call, source=event.source, user=_acting_user(context))
        return shadow.run_actions(runtime.clients, journal, event.id, rule, context, call_for)
    first_error: str | None = None
    for index, action in enumerate(rule.actions):
        with bound(step=action.id):
            started: float | None = None  # set when the call starts: a template error has none
            link: object = None
            if action.id in steps:
                continue  # succeeded in an earlier try: effectively once
            try:
                if not action.should_run(context):
                    journal.add(partial(
                        history.record_step, event_pk=event.id, rule_id=rule.id,
                        step_id=action.id, uses=action.uses, status="skipped",
                        error="`if` was false",
                    ))  # fmt: skip
                    continue
                args = action.render(context)
                link = args.get("connection")
                call = StepCall(action.uses, args, event.source, _acting_user(context))
                journal.flush()
                started = time.monotonic()
                if action.uses == waiting.WAIT:
                    result = waiting.at_wait(
                        runtime.sessions, runtime.clients, event, rule.id, action, index,
                        context, journal,
                    )  # fmt: skip
                else:
                    result = run_step(runtime.clients, call)
            except StepRetry as exc:
                journal.add(partial(
                    history.record_step, event_pk=event.id, rule_id=rule.id,
                    step_id=action.id, uses=action.uses, status="retrying", error=str(exc),
                    duration_ms=_since(started), http_status=exc.http_status,
                ))  # fmt: skip
                _measure(runtime, action.uses, link, started, failed=exc.http_status or 0)
                raise
            except (StepFailed, TemplateError) as exc:
                message = f"step {action.id} ({action.uses}): {exc}"
                code = exc.http_status if isinstance(exc, StepFailed) else None
                journal.add(partial(
                    history.record_step, event_pk=event.id, rule_id=rule.id,
                    step_id=action.id, uses=action.uses, status="failed", error=str(exc),
                    duration_ms=_since(started), http_status=code,
                ))  # fmt: skip
                if started is not None:  # a template error called nothing
                    _measure(runtime, action.uses, link, started, failed=code or 0)
                log.warning("event %s rule %s: %s", event.id, rule.id, message)
                first_error = first_error or message
                if action.on_error == "continue":
                    continue
                return first_error
            status = result.outputs.get("status")
            journal.add(partial(
                history.record_step, event_pk=event.id, rule_id=rule.id, step_id=action.id,
                uses=action.uses, status="succeeded", output=result.outputs,
                duration_ms=_since(started),
                http_status=status if isinstance(status, int) and status > 0 else None,
            ))  # fmt: skip
            _measure(runtime, action.uses, link, started, failed=None)
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


def _measure(
    runtime: Runtime,
    uses: str,
    link: object,
    started: float | None,
    *,
    failed: int | None,
) -> None:
    """Step latency by action; a failure (``failed``: the HTTP status, 0 for none) by
    connection and status, for ``/metrics``."""
    if started is None:
        return
    store = MetricsStore(runtime.redis)
    store.observe("step_duration", {"action": uses}, time.monotonic() - started)
    if failed is not None:
        # The step's connection, or the default one of an SDP action ("none": a plain call).
        connection = link if isinstance(link, str) and link else None
        connection = connection or ("sdp" if uses.startswith("sdp.") else "none")
        store.count("step_failures", {"connection": str(connection), "http_status": str(failed)})


def _since(started: float | None) -> int | None:
    """Milliseconds since ``started`` (a monotonic time), or ``None`` when nothing started."""
    return None if started is None else round((time.monotonic() - started) * 1000)


def _step_call(uses: str, args: dict[str, Any], *, source: str, user: str | None) -> StepCall:
    return StepCall(uses, args, source, user)


def _acting_user(context: Mapping[str, Any]) -> str | None:
    """The technician of the request, for per-user connections."""
    technician = context.get("request", {}).get("technician")
    if isinstance(technician, dict):
        email = technician.get("email_id")
        return str(email) if email else None
    return None
