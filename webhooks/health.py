"""Health, readiness and metrics: whether deskwire as a whole is processing events.

``/healthz`` is the whole system: the database, the broker, a live worker (heartbeats in
Redis) and a queue that moves (the oldest due event has not waited too long). A web
process with no worker behind it answers 503 here, so monitoring sees it.
``/readyz`` is this web process: it can accept webhooks (they are stored in the
database, even with the broker or every worker down). Both bodies list every check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from deskwire.event_store import count_by_status
from deskwire.metrics_store import MetricsStore, render_counter, render_histogram
from deskwire.recovery_store import oldest_waiting_age
from deskwire.settings import Settings
from webhooks.context import EventQueue, web_context

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)
QUEUE = "deskwire"  # the Celery queue (worker.celery_app.QUEUE; webhooks may not import it)


@dataclass(frozen=True)
class Observed:
    """What the checks measured (``None``: could not be measured)."""

    broker_up: bool
    worker_last_seen: float | None
    oldest_waiting: float | None


def _database(sessions: sessionmaker[Session]) -> str:
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure is "down"
        return f"down: {type(exc).__name__}"


def _workers(settings: Settings, broker_up: bool, last_seen: float | None) -> str:
    limit = settings.worker_stale_after
    if not broker_up:
        return "unknown: the broker is down, so worker heartbeats cannot be read"
    if last_seen is None:
        return "down: no worker has been seen (is `deskwire worker` running?)"
    if last_seen > limit:
        stale = f"limit DESKWIRE_WORKER_STALE_AFTER={limit}s"
        return f"down: no worker seen for {last_seen:.0f}s ({stale})"
    return f"ok; last heartbeat {last_seen:.0f}s ago"


def _queue(settings: Settings, oldest: float | None) -> str:
    limit = settings.queue_max_age
    if oldest is None:
        return "unknown: the database is down"
    if oldest > limit:
        return (
            f"stuck: the oldest due event has waited {oldest:.0f}s "
            f"(limit DESKWIRE_QUEUE_MAX_AGE={limit}s)"
        )
    return f"ok; oldest due event waited {oldest:.0f}s"


def observe(sessions: sessionmaker[Session], queue: EventQueue) -> Observed:
    """Measure the broker, the workers' heartbeats and the queue's age."""
    broker_up = queue.ping()
    last_seen: float | None = None
    if broker_up:
        try:
            last_seen = queue.last_worker_seen()
        except Exception:  # noqa: BLE001 - Redis went away between the two calls
            broker_up = False
    try:
        oldest: float | None = oldest_waiting_age(sessions)
    except Exception:  # noqa: BLE001 - the database check reports it
        oldest = None
    return Observed(broker_up, last_seen, oldest)


def system_checks(
    settings: Settings, sessions: sessionmaker[Session], queue: EventQueue
) -> dict[str, str]:
    """Each part of deskwire and its state: ``ok`` / ``ok; …`` when healthy.

    Shared by ``/healthz``, ``/readyz`` and ``deskwire doctor``.
    """
    seen = observe(sessions, queue)
    return {
        "database": _database(sessions),
        "broker": "ok" if seen.broker_up else "down",
        "workers": _workers(settings, seen.broker_up, seen.worker_last_seen),
        "queue": _queue(settings, seen.oldest_waiting),
    }


def healthy(value: str) -> bool:
    """Whether a check's text says healthy ("ok; <detail>" is healthy with a note)."""
    return value == "ok" or value.startswith("ok;")


def _all_checks() -> dict[str, str]:
    context = web_context()
    checks = system_checks(context.settings, context.sessions, context.queue)
    for name, check in context.checks.items():
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 - a failing check reports, never crashes
            checks[name] = f"error: {type(exc).__name__}: {exc}"
    return checks


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when every part works and events are being processed, else 503 naming what not."""
    checks = _all_checks()
    ok = all(healthy(value) for value in checks.values())
    return jsonify(status="ok" if ok else "degraded", checks=checks), 200 if ok else 503


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when this process can accept webhooks (the database answers); lists every check."""
    checks = _all_checks()
    ready = healthy(checks["database"])
    degraded = not all(healthy(value) for value in checks.values())
    status = "ready" if ready and not degraded else ("degraded" if ready else "not ready")
    return jsonify(status=status, checks=checks), 200 if ready else 503


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, read at scrape time from the database and Redis.

    Every web and worker process counts into Redis and the event table is shared, so any
    web process answers for all of them: event counts, worker liveness, queue age,
    webhook, step and token counters.
    """
    context = web_context()
    counts = count_by_status(context.sessions)
    seen = observe(context.sessions, context.queue)
    lines = [
        "# HELP deskwire_events Events stored, by status.",
        "# TYPE deskwire_events gauge",
        *(f'deskwire_events{{status="{status}"}} {n}' for status, n in sorted(counts.items())),
        "# HELP deskwire_dead_letters Events on the dead-letter list (status failed).",
        "# TYPE deskwire_dead_letters gauge",
        f"deskwire_dead_letters {counts.get('failed', 0)}",
        "# HELP deskwire_broker_up Whether the broker (Redis) answers.",
        "# TYPE deskwire_broker_up gauge",
        f"deskwire_broker_up {int(seen.broker_up)}",
        "# HELP deskwire_worker_last_seen_seconds Seconds since any worker's last heartbeat "
        "(+Inf: none seen, or the broker is down).",
        "# TYPE deskwire_worker_last_seen_seconds gauge",
        f"deskwire_worker_last_seen_seconds {_number(seen.worker_last_seen)}",
        "# HELP deskwire_worker_up Whether a worker was seen within DESKWIRE_WORKER_STALE_AFTER.",
        "# TYPE deskwire_worker_up gauge",
        f"deskwire_worker_up {int(_worker_up(context.settings, seen))}",
        "# HELP deskwire_oldest_queued_event_age_seconds How long the oldest due queued event "
        "has waited (0: none waits).",
        "# TYPE deskwire_oldest_queued_event_age_seconds gauge",
        f"deskwire_oldest_queued_event_age_seconds {_number(seen.oldest_waiting)}",
    ]
    store = context.metrics
    if store is not None:
        try:
            lines += _from_redis(store)
        except redis.RedisError as exc:
            lines += ["# deskwire: Redis did not answer; its metrics are missing this scrape"]
            log.warning("metrics: Redis unavailable (%s)", exc)
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


# What /metrics reads from Redis after the queue depth, in order: (kind, metric, stored
# name, help).
_REDIS_METRICS: tuple[tuple[str, str, str, str], ...] = (
    (
        "counter",
        "deskwire_webhooks_total",
        "webhooks",
        "Webhook replies by outcome (accepted, duplicate, refused) and reason.",
    ),
    (
        "histogram",
        "deskwire_event_duration_seconds",
        "event_duration",
        "Time to process one event (one try), by outcome.",
    ),
    (
        "histogram",
        "deskwire_step_duration_seconds",
        "step_duration",
        "Time of one step (one try), by action.",
    ),
    (
        "counter",
        "deskwire_step_failures_total",
        "step_failures",
        "Failed or retried steps by connection and HTTP status (0: no answer).",
    ),
    (
        "counter",
        "deskwire_token_refreshes_total",
        "token_refreshes",
        "Access tokens obtained by refresh or client credentials, by connection.",
    ),
    (
        "counter",
        "deskwire_reconcile_calls_total",
        "reconcile_calls",
        "SDP searches made by reconciliation, by source.",
    ),
    (
        "counter",
        "deskwire_reconciled_events_total",
        "reconciled_events",
        "Events made by reconciliation (changes with no webhook seen), by source.",
    ),
    (
        "counter",
        "deskwire_reconcile_errors_total",
        "reconcile_errors",
        "Reconciliation runs that SDP or the connection stopped, by source.",
    ),
)


def _from_redis(store: MetricsStore) -> list[str]:
    lines = [
        "# HELP deskwire_queue_depth Task messages waiting in the broker queue.",
        "# TYPE deskwire_queue_depth gauge",
        f"deskwire_queue_depth {store.queue_depth(QUEUE)}",
    ]
    for kind, metric, stored, help_text in _REDIS_METRICS:
        if kind == "counter":
            lines += render_counter(metric, help_text, store.counter(stored))
        else:
            lines += render_histogram(metric, help_text, store.histogram(stored))
    return lines


def _worker_up(settings: Settings, seen: Observed) -> bool:
    last = seen.worker_last_seen
    return last is not None and last <= settings.worker_stale_after


def _number(value: float | None) -> str:
    return "+Inf" if value is None else f"{value:.3f}"
