"""One ``request`` mapping for the rules, whatever shape SDP or the admin sent it in.

Shapes (docs/sdp.md, "Request shapes and enrichment"):

* REST API v3, Cloud and on-premises alike: ``{"request": {"id", "subject",
  "priority": {"name"}, "requester": {"email_id"}, "last_updated_time": {"value"}, …}}``;
* a Deluge custom function posting its ``requestObj`` map (v3 field names), under
  ``requestObj`` or as the body itself;
* the older on-premises JSON with upper-case keys (``WORKORDERID``, ``SUBJECT``,
  ``PRIORITY``, ``REQUESTER``, …) that custom triggers and scripts pass;
* a flat body an admin built with ``$`` variables (``{"id": "$id", "subject": …}``).

Everything becomes v3 field names and value shapes: lookups as ``{"name": …}``, users as
``{"name": …}`` or ``{"email_id": …}``, date-times as ``{"value": "<epoch ms>"}``, the id as
a string. Pure functions: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Where a body may hold the request, in order; else the body itself is a flat request.
REQUEST_KEYS = ("request", "requestObj", "requestobj", "request_obj")
# Keys of a flat body that describe the delivery, not the request.
ENVELOPE_KEYS = frozenset({"event", "event_id", "event_type", "token", "source"})
# Keys that make a flat body a request.
FLAT_ID_KEYS = frozenset({"id", "request_id", "display_id", "WORKORDERID", "workorderid"})
# A request with only these keys tells the rules nothing: the worker reads the request.
ID_KEYS = frozenset({"id", "display_id", "last_updated_time"})

LOOKUP_FIELDS = frozenset(
    {
        "status", "priority", "urgency", "impact", "mode", "level", "site", "group",
        "category", "subcategory", "item", "request_type", "template", "department",
        "service_category", "closure_code",
    }
)  # fmt: skip
USER_FIELDS = frozenset({"requester", "technician", "created_by", "last_updated_by"})
TIME_FIELDS = frozenset(
    {
        "created_time", "due_by_time", "first_response_due_by_time", "last_updated_time",
        "resolved_time", "completed_time", "responded_time", "scheduled_start_time",
        "scheduled_end_time", "assigned_time",
    }
)  # fmt: skip

# The older on-premises JSON: upper-case key → v3 field, or (v3 field, key inside it).
UPPER_CASE_FIELDS: dict[str, str | tuple[str, str]] = {
    "WORKORDERID": "id",
    "SUBJECT": "subject",
    "DESCRIPTION": "description",
    "PRIORITY": "priority",
    "STATUS": "status",
    "URGENCY": "urgency",
    "IMPACT": "impact",
    "MODE": "mode",
    "LEVEL": "level",
    "CATEGORY": "category",
    "SUBCATEGORY": "subcategory",
    "ITEM": "item",
    "GROUP": "group",
    "SITE": "site",
    "REQUESTTYPE": "request_type",
    "REQUESTTEMPLATE": "template",
    "REQUESTER": "requester",
    "REQUESTEREMAIL": ("requester", "email_id"),
    "TECHNICIAN": "technician",
    "TECHNICIANEMAIL": ("technician", "email_id"),
    "CREATEDTIME": "created_time",
    "DUEBYTIME": "due_by_time",
    "RESPONDEDTIME": "responded_time",
    "RESOLVEDTIME": "resolved_time",
    "COMPLETEDTIME": "completed_time",
    "LASTUPDATEDTIME": "last_updated_time",
}


def epoch_ms(value: Any) -> str | None:
    """Epoch milliseconds as digits, from ``123``, ``"123"`` or ``{"value": …}``; else ``None``.

    Display strings ("Nov 10, 2016 11:44 AM") have minute resolution, so two changes in
    one minute would look alike: they are not a state.
    """
    if isinstance(value, Mapping):
        value = value.get("value")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value > 0 else None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and 0 < len(text) <= 20 and int(text) > 0:
            return text
    return None


def _as_lookup(value: Any) -> Any:
    if isinstance(value, str):
        return {"name": value}
    return value


def _as_user(value: Any) -> Any:
    if isinstance(value, str):
        return {"email_id": value} if "@" in value else {"name": value}
    return value


def _as_time(value: Any) -> Any:
    if isinstance(value, Mapping):
        shaped = dict(value)
        if isinstance(shaped.get("value"), int) and not isinstance(shaped["value"], bool):
            shaped["value"] = str(shaped["value"])  # as the Cloud sends it: a string
        return shaped
    millis = epoch_ms(value)
    if millis is not None:
        return {"value": millis}
    if isinstance(value, str) and value.strip() and not value.strip().lstrip("-").isdigit():
        return {"display_value": value}
    return None  # the older JSON writes -1 or 0 for "not set"


def _coerce(field: str, value: Any) -> Any:
    if field == "id" or field == "display_id":
        usable = isinstance(value, str | int) and not isinstance(value, bool) and value != ""
        return str(value).strip() if usable else value
    if field in LOOKUP_FIELDS:
        return _as_lookup(value)
    if field in USER_FIELDS:
        return _as_user(value)
    if field in TIME_FIELDS:
        return _as_time(value)
    return value


def normalise_request(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One request in v3 field names and value shapes (see the module docstring)."""
    request: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        target = UPPER_CASE_FIELDS.get(key) or UPPER_CASE_FIELDS.get(key.upper())
        if target == key:
            target = None  # a v3 name ("subject"), not an older one spelt in lower case
        if isinstance(target, tuple):
            if isinstance(value, str) and value:
                nested.setdefault(target[0], {})[target[1]] = value
            continue
        field = target or ("id" if key in ("request_id", "workorderid") else key)
        if field in request and target is not None:
            continue  # a v3 key of the same meaning wins over the upper-case one
        request[field] = _coerce(field, value)
    for field, extra in nested.items():
        current = request.get(field)
        request[field] = {**extra, **current} if isinstance(current, dict) else extra
    return request


def is_request_event(event_type: str) -> bool:
    """Whether an event type is about a request (``request.created``, ``request``)."""
    return event_type.split(".", 1)[0].lower() == "request"


def request_in_payload(
    payload: Mapping[str, Any], *, event_type: str, request_id: str | None = None
) -> dict[str, Any]:
    """The request a webhook body describes, normalised; ``request_id`` (from ingest) wins.

    A flat body is the request only for a request event (a ``change.*`` body's ``id`` and
    fields are the change's): other events get just the id they name, or nothing.
    """
    request: dict[str, Any] = {}
    for key in REQUEST_KEYS:
        value = payload.get(key)
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if isinstance(value, Mapping):
            request = normalise_request(value)
            break
    else:
        flat = {
            k: v for k, v in payload.items() if k not in ENVELOPE_KEYS and k not in REQUEST_KEYS
        }
        if is_request_event(event_type) and FLAT_ID_KEYS & set(flat):
            request = normalise_request(flat)
    if request_id is not None:
        request["id"] = request_id
    return request


def about_a_request(event_type: str, payload: Mapping[str, Any]) -> bool:
    """Whether the event is about a request (its type or a request key in the body says so)."""
    return is_request_event(event_type) or any(k in payload for k in REQUEST_KEYS)


def ids_only(request: Mapping[str, Any]) -> bool:
    """Whether the request carries nothing but identifying fields."""
    return set(request) <= ID_KEYS


def last_updated_time(payload: Mapping[str, Any], request: Mapping[str, Any]) -> str | None:
    """The request's ``last_updated_time`` in the body (nested or flat), as epoch ms digits."""
    return epoch_ms(request.get("last_updated_time")) or epoch_ms(payload.get("last_updated_time"))
