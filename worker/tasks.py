"""The Celery task: a few lines that turn a processing outcome into done, retry or dead letter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from deskwire import event_store, recovery_store
from deskwire.log_context import bound
from deskwire.metrics_store import MetricsStore
from deskwire.tables import Event, EventStatus, utcnow
from worker.enqueue import PROCESS_EVENT, EnqueueError, send_process_event
from worker.errors import EventDeadLettered
from worker.history import Journal
from worker.processing import Outcome, Runtime, process_event

log = logging.getLogger(__name__)

BLOCKED_DELAY = 1.0  # seconds before an event waiting for an earlier one is tried again


def backoff(attempt: int, *, ceiling: float, retry_after: float | None) -> float:
    """Exponential backoff with jitter (2 s, 4 s, 8 s … up to ``ceiling``), ≥ Retry-After."""
    exponential = min(ceiling, 2.0 * 2 ** max(0, attempt - 1))
    jittered = random.uniform(exponential / 2, exponential)  # noqa: S311 - not for secrets
    return max(jittered, min(retry_after or 0.0, ceiling))


def requeue(app: Celery, runtime: Runtime, event_pk: int, delay: float) -> None:
    """Send the event again, due in ``delay`` s; if the broker refuses, the sweeper will.

    The due time is recorded in the database first: the countdown message lives in one
    worker's memory until then, and if that worker dies the sweeper sends a new one soon
    after the event is due. A fresh message rather than ``Task.retry``: a retry whose
    publish fails is dropped by Celery, which would strand the event.
    """
    recovery_store.wait_until(runtime.sessions, event_pk, utcnow() + timedelta(seconds=delay))
    with runtime.sessions() as session:
        event = session.get(Event, event_pk)
        if event is None:
            return
        event_type, request_id = event.event_type, event.request_id
    try:
        send_process_event(
            app, event_pk, event_type=event_type, request_id=request_id, countdown=delay
        )
    except EnqueueError as exc:
        log.warning("event %s: could not queue the next try (%s); the sweeper will", event_pk, exc)
        recovery_store.clear_dispatched(runtime.sessions, event_pk)


def settle(task: Task, runtime: Runtime, event_pk: int, outcome: Outcome, journal: Journal) -> str:
    """Record the outcome with the run's history still in ``journal`` (one transaction);
    schedule the next try of a transient failure."""
    sessions, settings = runtime.sessions, runtime.settings
    version = outcome.ruleset_version
    if outcome.kind == "done":
        event_store.finish(
            sessions, event_pk, EventStatus.DONE, ruleset_version=version, also=journal.take()
        )
    elif outcome.kind == "failed":
        log.error("event %s failed: %s", event_pk, outcome.error)
        event_store.finish(
            sessions, event_pk, EventStatus.FAILED, error=outcome.error,
            ruleset_version=version, also=journal.take(),
        )  # fmt: skip
    elif outcome.kind == "retry":
        journal.flush()
        with sessions() as session:
            event = session.get(Event, event_pk)
            attempts = event.attempts if event is not None else settings.max_attempts
        if attempts >= settings.max_attempts:
            error = f"gave up after {attempts} tries: {outcome.error}"
            log.error("event %s failed: %s", event_pk, error)
            event_store.finish(
                sessions, event_pk, EventStatus.FAILED, error=error, ruleset_version=version
            )
            return "failed"
        delay = backoff(
            attempts, ceiling=settings.retry_backoff_max, retry_after=outcome.retry_after
        )
        log.warning("event %s: %s; try %s in %.1fs", event_pk, outcome.error, attempts + 1, delay)
        event_store.finish(
            sessions,
            event_pk,
            EventStatus.QUEUED,
            error=outcome.error,
            ruleset_version=version,
            not_before=utcnow() + timedelta(seconds=delay),
        )
        requeue(task.app, runtime, event_pk, delay)
    elif outcome.kind == "duplicate":
        log.info("event %s: %s", event_pk, outcome.error)
        event_store.finish(
            sessions, event_pk, EventStatus.DUPLICATE, ruleset_version=version,
            also=journal.take(),
        )  # fmt: skip
    elif outcome.kind == "blocked":
        journal.flush()
        log.info("event %s: %s", event_pk, outcome.error)
        requeue(task.app, runtime, event_pk, outcome.retry_after or BLOCKED_DELAY)
    else:
        journal.flush()
        log.info("event %s skipped: %s", event_pk, outcome.error)
    return outcome.kind


def register_tasks(app: Celery, runtime: Callable[[], Runtime]) -> None:
    """Register the process-event task on ``app``; ``runtime`` gives this process's parts."""

    @app.task(  # type: ignore[untyped-decorator]
        name=PROCESS_EVENT,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        # Expected: logged in one line, no traceback (the event's error is in its history).
        throws=(EventDeadLettered,),
    )
    def process_event_task(self: Task, event_pk: int) -> str:
        """Process one event; a dead-lettered event ends the task in FAILURE (for Flower).

        The failure is raised only after the outcome is recorded, and the message is acked
        on failure (``task_acks_on_failure_or_timeout``), so raising changes what monitors
        see and nothing of the retry or redelivery guarantees.
        """
        with bound(event=event_pk):
            current = runtime()
            claimer = str(self.request.id)
            journal = Journal(current.sessions)
            started = time.monotonic()
            try:
                with current.leases.kept(event_pk, claimer):
                    outcome = process_event(current, event_pk, claimer=claimer, journal=journal)
            except SoftTimeLimitExceeded:
                outcome = Outcome("retry", "the time limit of one run was exceeded")
            except Exception as exc:
                # A bug or an unreachable database must not strand the event in "running":
                # it is retried like a transient failure and dead-lettered after max_attempts.
                log.exception("event %s: processing crashed", event_pk)
                outcome = Outcome("retry", f"internal error: {type(exc).__name__}: {exc}")
            kind = settle(self, current, event_pk, outcome, journal)
            if kind in ("done", "failed", "retry", "duplicate"):  # a try that ran (not a wait)
                MetricsStore(current.redis).observe(
                    "event_duration", {"outcome": kind}, time.monotonic() - started
                )
            if kind == "failed":
                error = _dead_letter_error(current, event_pk)
                raise EventDeadLettered(f"event {event_pk} is on the dead-letter list: {error}")
            return kind


def _dead_letter_error(runtime: Runtime, event_pk: int) -> str:
    """The error recorded for a dead-lettered event (as settled, including "gave up …")."""
    with runtime.sessions() as session:
        event = session.get(Event, event_pk)
        return (event.error if event is not None else None) or "failed"
