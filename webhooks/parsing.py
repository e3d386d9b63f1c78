"""Reading a webhook: body (JSON or form), event type, event id and request id.

SDP admins configure the payload themselves, so the shapes accepted are broad; what is
not accepted gets a message that says which field to send.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.datastructures import Headers

from deskwire.tables import REQUEST_ID
from webhooks.errors import WebhookError

EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")
EVENT_ID = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces
JSON_FIELDS = ("payload", "data", "json", "body")


@dataclass(frozen=True)
class ParsedWebhook:
    """The parts of a webhook that deskwire stores."""

    payload: dict[str, Any]
    event_type: str
    event_id: str | None  # the sender's id; None when it gave none
    request_id: str | None


def parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """Decode a JSON or form-encoded body into a dict."""
    mimetype = content_type.split(";", 1)[0].strip().lower()
    if mimetype == "application/json" or mimetype.endswith("+json"):
        return _json_object(raw, "the body")
    if mimetype == "application/x-www-form-urlencoded":
        return _form(raw)
    shown = mimetype or "none"
    raise WebhookError(
        415,
        "unsupported_content_type",
        f"content type {shown!r} is not accepted: send application/json "
        "or application/x-www-form-urlencoded",
    )


def _json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text)
    except UnicodeDecodeError:
        raise WebhookError(400, "malformed_body", f"{what} is not UTF-8") from None
    except ValueError as exc:
        raise WebhookError(400, "malformed_body", f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        kind = type(value).__name__
        raise WebhookError(400, "malformed_body", f"{what} must be a JSON object, not {kind}")
    return value


def _form(raw: bytes) -> dict[str, Any]:
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        raise WebhookError(400, "malformed_body", "the form body cannot be decoded") from None
    fields: dict[str, Any] = {}
    for name, value in pairs:
        fields[name] = value  # the last value of a repeated field wins
    # One field holding JSON (SDP's "payload" textarea): that object is the body; the other
    # fields (event, event_id) still count when the object lacks them.
    json_field = next((f for f in JSON_FIELDS if f in fields), None)
    if json_field is None and len(fields) == 1:
        json_field = next(iter(fields))
        if not str(fields[json_field]).lstrip().startswith("{"):
            json_field = None
    if json_field is None:
        return fields
    body = _json_object(str(fields.pop(json_field)), f"form field {json_field!r}")
    for name, value in fields.items():
        body.setdefault(name, value)
    return body


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        return str(value).strip() or None
    return None


def find_request_id(body: Mapping[str, Any]) -> str | None:
    """The SDP request id from ``request_id``, ``request.id`` or the older ``WORKORDERID``."""
    request = body.get("request")
    candidates = [
        body.get("request_id"),
        request.get("id") if isinstance(request, dict) else None,
        body.get("WORKORDERID"),
        body.get("workorderid"),
    ]
    for candidate in candidates:
        value = _scalar(candidate)
        if value is not None:
            return value
    return None


def parse_webhook(
    raw: bytes,
    content_type: str,
    *,
    source: str,
    query: Mapping[str, str],
    headers: Mapping[str, str] | Headers,
) -> ParsedWebhook:
    """Read a webhook into a :class:`ParsedWebhook`, or raise a 400/415 WebhookError."""
    body = parse_body(raw, content_type)
    event_type = _scalar(body.get("event")) or query.get("event") or headers.get("X-Deskwire-Event")
    if not event_type:
        raise WebhookError(
            400,
            "missing_event_type",
            "no event type: send a body field 'event' (e.g. \"request.created\"), "
            "a query parameter 'event' or the header X-Deskwire-Event",
        )
    if not EVENT_TYPE.match(event_type):
        raise WebhookError(
            400,
            "bad_event_type",
            f"event type {event_type[:80]!r} is not valid: use letters, digits and . _ : -, "
            "e.g. request.created",
        )
    # No id from the sender: ``None``. A body digest is no identity (an id-only body is the
    # same for every change of its request); the worker decides by the request's state.
    event_id = _scalar(body.get("event_id")) or headers.get("X-Deskwire-Event-Id")
    if event_id is not None and not EVENT_ID.match(event_id):
        raise WebhookError(
            400,
            "bad_event_id",
            "event_id must be 1 to 200 printable characters without spaces",
        )
    request_id = find_request_id(body) or _scalar(headers.get("X-Deskwire-Request-Id"))
    if request_id is not None and not REQUEST_ID.match(request_id):
        raise WebhookError(
            400,
            "bad_request_id",
            "the request id must be 1 to 100 letters, digits, '-' or '_' (SDP sends digits)",
        )
    return ParsedWebhook(body, event_type, event_id, request_id)
