"""``POST /webhooks/sdp[/<source>]``: verify → validate → store and enqueue → reply."""

from __future__ import annotations

import json
import logging
import re

from flask import Blueprint, Response, request

from deskwire.event_store import NewEvent
from webhooks.auth import check_signature, check_token
from webhooks.body_reading import read_body
from webhooks.context import web_context
from webhooks.errors import WebhookError
from webhooks.parsing import parse_webhook

log = logging.getLogger(__name__)

bp = Blueprint("ingest", __name__)

SOURCE = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
DEFAULT_SOURCE = "sdp"


def _reply(**fields: object) -> Response:
    """The bytes ``jsonify`` makes (sorted keys, compact, a newline) without the app's JSON
    provider: a reply per webhook, and only strings and numbers in it."""
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")) + "\n"
    return Response(body, mimetype="application/json")


@bp.after_app_request
def _count(response: Response) -> Response:
    """Count each webhook reply by outcome and reason (error replies included)."""
    if request.blueprint != "ingest" and not request.path.startswith("/webhooks/"):
        return response
    metrics = web_context().metrics
    if metrics is None:
        return response
    status = response.status_code
    if status == 202:  # the common reply: its body is known, no need to parse it again
        outcome, reason = "accepted", "queued"
    else:
        body = response.get_json(silent=True) if response.is_json else None
        detail = body if isinstance(body, dict) else {}
        if status == 200:
            outcome, reason = "duplicate", str(detail.get("status") or "duplicate")
        else:
            outcome, reason = "refused", str(detail.get("error") or f"http_{status}")[:40]
    metrics.count("webhooks", {"outcome": outcome, "reason": reason, "code": str(status)})
    return response


@bp.post("/webhooks/sdp")
@bp.post("/webhooks/sdp/<source>")
@bp.post("/webhooks/sdp/<source>/<event>")
def receive(source: str = DEFAULT_SOURCE, event: str | None = None) -> tuple[Response, int]:
    """Accept one SDP webhook; the event is stored before the reply.

    ``event`` in the path is the event type: an SDP webhook has one fixed URL per trigger.
    """
    context = web_context()
    settings = context.settings
    if not SOURCE.fullmatch(source):
        raise WebhookError(
            400, "bad_source", "the source in the URL must match [a-z0-9][a-z0-9_-]{0,99}"
        )
    tokens = [token.get_secret_value() for token in settings.webhook_tokens]
    presented = request.headers.get("X-Deskwire-Token") or request.args.get("token")
    check_token(presented, tokens)
    raw = read_body(
        request.environ,
        max_bytes=settings.webhook_max_bytes,
        read_timeout=settings.webhook_read_timeout,
    )
    if settings.webhook_hmac_secret is not None:
        check_signature(settings.webhook_hmac_secret.get_secret_value(), request.headers, raw)
    parsed = parse_webhook(
        raw,
        request.content_type or "",
        query=request.args,
        headers=request.headers,
        path_event=event,
        max_depth=settings.webhook_max_depth,
    )
    # Stored, and if new published with the others of its commit group (group_commit.py).
    stored = context.events.accept(
        NewEvent(
            source=source,
            event_id=parsed.event_id,
            event_type=parsed.event_type,
            request_id=parsed.request_id,
            payload=parsed.payload,
            dedupe_window=settings.dedupe_window,
        )
    )
    accepted = stored.accepted
    if accepted.duplicate:
        return _reply(event_id=accepted.event_id, status="duplicate"), 200
    if stored.publish_error is not None:  # stored already; the sweeper dispatches it
        log.warning(
            "event %s stored, broker unavailable (%s); will dispatch later",
            accepted.pk,
            stored.publish_error,
        )
    else:
        context.dispatch_marks.add(accepted.pk)
    log.info(
        "accepted event %s (%s, source %s, request %s)",
        accepted.event_id,
        parsed.event_type,
        source,
        parsed.request_id,
    )
    # `id` is deskwire's number of the event; `deskwire events show` takes either.
    return _reply(event_id=accepted.event_id, id=accepted.pk, status="queued"), 202
