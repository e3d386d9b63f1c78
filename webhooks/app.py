"""The Flask app factory of the web process."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from flask import Flask, Response, jsonify
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from deskwire.metrics_store import MetricsStore
from deskwire.settings import Settings
from webhooks import health, ingest
from webhooks.context import EventQueue, WebContext
from webhooks.errors import WebhookError
from webhooks.security_headers import add_security_headers

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify(error=code, message=message), status


def create_app(
    settings: Settings,
    *,
    sessions: sessionmaker[Session],
    queue: EventQueue,
    metrics: MetricsStore | None = None,
    checks: Mapping[str, Callable[[], str]] | None = None,
) -> Flask:
    """Build the web app on parts made by the composition root (:mod:`deskwire.compose`).

    ``queue`` is the worker's enqueue API; ``metrics`` the shared counters (None: nothing
    is counted); ``checks`` adds named health checks (e.g. the rules) to ``/healthz``.
    """
    app = Flask("deskwire")
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_bytes
    app.extensions["deskwire"] = WebContext(settings, sessions, queue, dict(checks or {}), metrics)
    app.register_blueprint(ingest.bp)
    app.register_blueprint(health.bp)
    add_security_headers(app)

    @app.errorhandler(WebhookError)
    def _webhook_error(exc: WebhookError) -> tuple[Response, int]:
        return _error(exc.status, exc.code, exc.message)

    @app.errorhandler(413)
    def _too_large(_exc: HTTPException) -> tuple[Response, int]:
        limit = settings.webhook_max_bytes
        return _error(413, "too_large", f"the body is larger than the limit of {limit} bytes")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        return _error(exc.code or 500, code, exc.description or exc.name or "error")

    return app
