"""Health and metrics endpoints for load balancers and Prometheus."""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from deskwire.event_store import count_by_status
from deskwire.metrics_store import MetricsStore, render_counter, render_histogram
from webhooks.context import web_context

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)
QUEUE = "deskwire"  # the Celery queue (worker.celery_app.QUEUE; webhooks may not import it)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when the database and the broker answer, else 503 naming what is down."""
    context = web_context()
    checks: dict[str, str] = {}
    try:
        with context.sessions() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure is "down"
        checks["database"] = f"down: {type(exc).__name__}"
    checks["broker"] = "ok" if context.queue.ping() else "down"
    for name, check in context.checks.items():
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 - a failing check reports, never crashes
            checks[name] = f"error: {type(exc).__name__}: {exc}"
    # "ok; <detail>" is healthy with a note (e.g. a rejected rules edit, old rules running).
    healthy = all(value == "ok" or value.startswith("ok;") for value in checks.values())
    return jsonify(status="ok" if healthy else "degraded", checks=checks), 200 if healthy else 503


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, read at scrape time from the database and Redis.

    Every web and worker process counts into Redis and the event table is shared, so any
    web process answers for all of them.
    """
    context = web_context()
    counts = count_by_status(context.sessions)
    lines = [
        "# HELP deskwire_events Events stored, by status.",
        "# TYPE deskwire_events gauge",
        *(f'deskwire_events{{status="{status}"}} {n}' for status, n in sorted(counts.items())),
        "# HELP deskwire_dead_letters Events on the dead-letter list (status failed).",
        "# TYPE deskwire_dead_letters gauge",
        f"deskwire_dead_letters {counts.get('failed', 0)}",
    ]
    store = context.metrics
    if store is not None:
        try:
            lines += _from_redis(store)
        except redis.RedisError as exc:
            lines += ["# deskwire: Redis did not answer; its metrics are missing this scrape"]
            log.warning("metrics: Redis unavailable (%s)", exc)
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


def _from_redis(store: MetricsStore) -> list[str]:
    lines = [
        "# HELP deskwire_queue_depth Task messages waiting in the broker queue.",
        "# TYPE deskwire_queue_depth gauge",
        f"deskwire_queue_depth {store.queue_depth(QUEUE)}",
    ]
    lines += render_counter(
        "deskwire_webhooks_total",
        "Webhook replies by outcome (accepted, duplicate, refused) and reason.",
        store.counter("webhooks"),
    )
    lines += render_histogram(
        "deskwire_event_duration_seconds",
        "Time to process one event (one try), by outcome.",
        store.histogram("event_duration"),
    )
    lines += render_histogram(
        "deskwire_step_duration_seconds",
        "Time of one step (one try), by action.",
        store.histogram("step_duration"),
    )
    lines += render_counter(
        "deskwire_step_failures_total",
        "Failed or retried steps by connection and HTTP status (0: no answer).",
        store.counter("step_failures"),
    )
    lines += render_counter(
        "deskwire_token_refreshes_total",
        "Access tokens obtained by refresh or client credentials, by connection.",
        store.counter("token_refreshes"),
    )
    return lines
