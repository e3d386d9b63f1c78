"""Reading a webhook: body (any shape), event type, event id and request id.

SDP admins configure the payload themselves, so the shapes accepted are broad (see
:mod:`webhooks.body_shapes`); what is not accepted gets a message that says which field
to send. Every id that is stored or used in a path is checked whole (``fullmatch``: a
trailing newline is not "the end of the line"), and values that are SDP variables the
sender did not fill in (``$subject``) are refused rather than stored as text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import Headers

from deskwire.tables import REQUEST_ID
from deskwire.webhook_payload import (
    DISPLAY_ID_SOURCES,
    display_id_candidate,
    is_request_event,
    request_id_candidate,
    request_id_sources,
)
from webhooks.body_shapes import decode_body
from webhooks.errors import WebhookError

EVENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
EVENT_ID = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no spaces
# A whole value that is an SDP variable left as typed: $id, ${id}, $requester.email_id.
PLACEHOLDER = re.compile(r"\$(?:\{[A-Za-z_][A-Za-z0-9_.]*\}|[A-Za-z_][A-Za-z0-9_.]*)")
# Inside an id any variable left in is a sign it was not filled in ("$id-$last_updated_time").
PLACEHOLDER_INSIDE = re.compile(r"\$\{?[A-Za-z_]")
DEFAULT_MAX_DEPTH = 32


@dataclass(frozen=True)
class ParsedWebhook:
    """The parts of a webhook that deskwire stores."""

    payload: dict[str, Any]
    event_type: str
    event_id: str | None  # the sender's id; None when it gave none
    request_id: str | None


def _not_substituted(where: str, value: str) -> WebhookError:
    return WebhookError(
        400,
        "unsubstituted_placeholder",
        f"{where} is {value[:60]!r}: the SDP variable was not substituted. Insert variables "
        "with the $ picker of SDP's webhook form (the name must be one SDP knows), or "
        "remove the field",
    )


def _path(parent: str, key: object) -> str:
    return (
        f"{parent}[{key}]" if isinstance(key, int) else (f"{parent}.{key}" if parent else str(key))
    )


def check_values(body: Mapping[str, Any], max_depth: int) -> None:
    """Refuse nesting over ``max_depth``, text that is not valid Unicode, and placeholders.

    A lone surrogate (``"\\ud800"`` in JSON) is not Unicode text: Python decodes it, but it
    cannot be encoded as UTF-8 for SDP or a PostgreSQL text column. It is refused here, so
    the event is never accepted and then failing later, on any database.
    """
    stack: list[tuple[str, Any, int]] = [("", body, 1)]
    while stack:
        where, value, depth = stack.pop()
        if isinstance(value, Mapping):
            items: list[tuple[object, Any]] = list(value.items())
        elif isinstance(value, list):
            items = list(enumerate(value))
        else:
            continue
        if depth > max_depth:
            raise WebhookError(
                400,
                "too_deep",
                f"the body is nested more than {max_depth} levels deep: send a flatter body",
            )
        for key, item in items:
            here = _path(where, key)
            for text in (key, item) if isinstance(key, str) else (item,):
                if isinstance(text, str) and not _encodable(text):
                    raise WebhookError(
                        400,
                        "malformed_body",
                        f"field {here[:100]!r} holds text that is not valid Unicode "
                        "(a lone surrogate such as \\ud800): send UTF-8 text",
                    )
            if isinstance(item, str) and PLACEHOLDER.fullmatch(item):
                raise _not_substituted(f"field {here[:100]!r}", item)
            stack.append((here, item, depth + 1))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: Any) -> str | None:
    """A body value usable as an id or type: strings and integers, else ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        return str(value)
    return None


def _event_type(
    body: Mapping[str, Any],
    path_event: str | None,
    query: Mapping[str, str],
    headers: Mapping[str, str] | Headers,
) -> str:
    event = body.get("event")
    nested = event.get("type") if isinstance(event, Mapping) else None
    candidates = [
        ("the URL path", path_event),
        ("body field 'event'", _text(event)),
        ("body field 'event.type'", _text(nested)),
        ("body field 'event_type'", _text(body.get("event_type"))),
        ("query parameter 'event'", query.get("event")),
        ("header X-Deskwire-Event", headers.get("X-Deskwire-Event")),
    ]
    where, event_type = next(((w, v) for w, v in candidates if v), ("", None))
    if not event_type:
        raise WebhookError(
            400,
            "missing_event_type",
            "no event type: end the URL with it (/webhooks/sdp/<source>/request.created), "
            "or send a body field 'event', a query parameter 'event' or the header "
            "X-Deskwire-Event",
        )
    if PLACEHOLDER_INSIDE.search(event_type):
        raise _not_substituted(f"the event type in {where}", event_type)
    if not EVENT_TYPE.fullmatch(event_type):
        raise WebhookError(
            400,
            "bad_event_type",
            f"the event type in {where} ({event_type[:80]!r}) is not valid: use letters, digits "
            "and . _ : - (no spaces or control characters), e.g. request.created",
        )
    return event_type


def _event_id(body: Mapping[str, Any], headers: Mapping[str, str] | Headers) -> str | None:
    event = body.get("event")
    candidates = [
        ("body field 'event_id'", body.get("event_id")),
        ("body field 'event.id'", event.get("id") if isinstance(event, Mapping) else None),
        ("header X-Deskwire-Event-Id", headers.get("X-Deskwire-Event-Id")),
    ]
    for where, raw in candidates:
        if raw is None or raw == "":
            continue
        value = _text(raw)
        if value is not None and PLACEHOLDER_INSIDE.search(value):
            raise _not_substituted(f"the event id in {where}", value)
        if value is None or not EVENT_ID.fullmatch(value):
            raise WebhookError(
                400,
                "bad_event_id",
                f"the event id in {where} must be 1 to 200 printable characters without "
                "spaces or control characters",
            )
        return value
    return None


def _request_id(
    body: Mapping[str, Any], event_type: str, headers: Mapping[str, str] | Headers
) -> str | None:
    about_request = is_request_event(event_type)
    where, raw = request_id_candidate(body, about_request=about_request)
    if raw is None:
        where, raw = "header X-Deskwire-Request-Id", headers.get("X-Deskwire-Request-Id") or None
    else:
        where = f"body field {where!r}"
    if raw is None:
        if not about_request:
            return None  # change.*, problem.*…: the rules get the payload as it is
        if _display_id(body) is not None:
            return None  # only the number people see: the worker resolves it to the id
        looked = ", ".join([*request_id_sources(about_request=True), *DISPLAY_ID_SOURCES])
        raise WebhookError(
            400,
            "missing_request_id",
            f"a {event_type} event needs the request id: none found in the body fields "
            f"{looked}, the bracketed form keys request[id], or the header "
            "X-Deskwire-Request-Id",
        )
    value = _text(raw)
    if value is not None and PLACEHOLDER_INSIDE.search(value):
        raise _not_substituted(f"the request id in {where}", value)
    if value is None or not REQUEST_ID.fullmatch(value):
        raise WebhookError(
            400,
            "bad_request_id",
            f"the request id in {where} must be 1 to 100 letters, digits, '-' or '_' "
            "(SDP sends digits)",
        )
    return value


def _display_id(body: Mapping[str, Any]) -> str | None:
    raw = display_id_candidate(body)
    if raw is None:
        return None
    value = _text(raw)
    if value is not None and PLACEHOLDER_INSIDE.search(value):
        raise _not_substituted("the display id in the body", value)
    if value is None or not REQUEST_ID.fullmatch(value):
        raise WebhookError(
            400,
            "bad_request_id",
            "the display id in the body (request.display_id, requestObj.display_id or "
            "display_id) must be 1 to 100 letters, digits, '-' or '_' (SDP sends digits)",
        )
    return value


def parse_webhook(
    raw: bytes,
    content_type: str,
    *,
    query: Mapping[str, str],
    headers: Mapping[str, str] | Headers,
    path_event: str | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> ParsedWebhook:
    """Read a webhook into a :class:`ParsedWebhook`, or raise a 4xx WebhookError."""
    body = decode_body(raw, content_type, max_depth=max_depth)
    check_values(body, max_depth)
    event_type = _event_type(body, path_event, query, headers)
    # No id from the sender: ``None``. A body digest is no identity (an id-only body is the
    # same for every change of its request); the worker decides by the request's state.
    event_id = _event_id(body, headers)
    request_id = _request_id(body, event_type, headers)
    return ParsedWebhook(body, event_type, event_id, request_id)
