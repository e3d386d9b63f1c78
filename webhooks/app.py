"""The Flask app factory of the web process."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from deskwire.database import make_engine, session_factory
from deskwire.schema import require_current
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
    queue: EventQueue | None = None,
    *,
    checks: Mapping[str, Callable[[], str]] | None = None,
) -> Flask:
    """Build the web app; ``queue`` defaults to the worker's enqueue API on the broker.

    ``checks`` adds named health checks (e.g. the rules) to ``/healthz``.
    """
    if queue is None:
        if settings.broker_url is None:
            raise RuntimeError(
                "DESKWIRE_BROKER_URL is not set: point it at Redis, "
                "or run `deskwire serve`, which starts its own"
            )
        from worker.enqueue import Enqueuer

        queue = Enqueuer(settings, settings.broker_url)
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    require_current(engine)  # raises SchemaError saying what to run
    app = Flask("deskwire")
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_bytes
    app.extensions["deskwire"] = WebContext(
        settings, session_factory(engine), queue, dict(checks or {})
    )
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
