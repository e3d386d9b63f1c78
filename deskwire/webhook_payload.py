"""Where the SDP request sits in a decoded webhook payload, whichever shape the admin built.

Both processes need this: the web process finds the request id in it, and the worker
shows rules one ``request`` whether the payload was nested (``{"request": {...}}``),
flat (``{"id": ..., "subject": ...}``) or on-premises style (``{"WORKORDERID": ...}``).
The stored payload stays as it was sent; this module only reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Keys that describe the delivery, not the request: never part of a flat request.
ENVELOPE_KEYS = frozenset({"event", "event_type", "event_id", "token", "source"})
# Objects that hold the request: SDP's own name, and a Deluge custom function's variable.
REQUEST_OBJECTS = ("request", "requestObj")
# Top-level keys that carry the request id in flat payloads, in the order they are tried.
# A bare ``id`` names the request only when the event is about a request (a ``change.*``
# event's ``id`` is the change's).
FLAT_ID_KEYS = ("request_id", "WORKORDERID", "workorderid", "id")


def is_request_event(event_type: str) -> bool:
    """Whether an event type is about a request (``request.created``, ``request``)."""
    head = event_type.split(".", 1)[0]
    return head.lower() == "request"


def request_id_sources(*, about_request: bool) -> list[str]:
    """Where the request id is looked for, in order, as dotted paths (for messages too)."""
    paths = ["request_id", *(f"{name}.id" for name in REQUEST_OBJECTS)]
    paths += ["WORKORDERID", "workorderid"]
    if about_request:
        paths.append("id")
    return paths


def request_id_candidate(payload: Mapping[str, Any], *, about_request: bool) -> tuple[str, Any]:
    """The first place that holds a request id and its raw value, or ``("", None)``.

    An empty string counts as absent (an SDP variable that was empty for this request).
    """
    for path in request_id_sources(about_request=about_request):
        container: Any = payload
        for part in path.split("."):
            container = container.get(part) if isinstance(container, Mapping) else None
        if container is not None and container != "":
            return path, container
    return "", None


def request_view(payload: Mapping[str, Any], request_id: str | None) -> dict[str, Any]:
    """The request as rules see it (``request.<field>``), read from a stored payload.

    Nested payloads give their ``request`` object; flat payloads give their own fields
    (without the delivery's ``event``/``event_id``/``token``) with ``id`` set to the
    request id; otherwise just ``{"id": request_id}``, which the worker completes from SDP.
    """
    nested = payload.get("request")
    if isinstance(nested, Mapping):
        view = dict(nested)
        if request_id and "id" not in view:
            view["id"] = request_id
        return view
    if not request_id:
        return {}
    if any(key in payload for key in FLAT_ID_KEYS):
        flat = {
            key: value
            for key, value in payload.items()
            if key not in ENVELOPE_KEYS and key not in FLAT_ID_KEYS
        }
        return {**flat, "id": request_id}
    return {"id": request_id}
