"""Health and metrics endpoints for load balancers and Prometheus."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from deskwire.event_store import count_by_status
from webhooks.context import web_context

bp = Blueprint("health", __name__)


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
    """Event counts by status in the Prometheus text format."""
    counts = count_by_status(web_context().sessions)
    lines = [
        "# HELP deskwire_events Events stored, by status.",
        "# TYPE deskwire_events gauge",
        *(f'deskwire_events{{status="{status}"}} {n}' for status, n in sorted(counts.items())),
    ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
