"""Where the SDP request id sits in a decoded webhook payload, whichever shape the admin built.

The web process uses it to refuse a request event that names no request; the worker's
view of the whole request is :mod:`sdp.request_shapes`. This module only reads payloads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Keys that describe the delivery, not the request: never part of a flat request.
ENVELOPE_KEYS = frozenset({"event", "event_type", "event_id", "token", "source"})
# Objects that hold the request: SDP's own name, and a Deluge custom function's variable.
REQUEST_OBJECTS = ("request", "requestObj")


def is_request_event(event_type: str) -> bool:
    """Whether an event type is about a request (``request.created``, ``request``)."""
    head = event_type.split(".", 1)[0]
    return head.lower() == "request"


def request_id_sources(*, about_request: bool) -> list[str]:
    """Where the request id is looked for, in order, as dotted paths (for messages too)."""
    paths = ["request_id", *(f"{name}.id" for name in REQUEST_OBJECTS)]
    paths += [f"{name}.{key}" for name in REQUEST_OBJECTS for key in ("WORKORDERID", "workorderid")]
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


# Where a request named only by the number people see carries it, in order.
DISPLAY_ID_SOURCES = (*(f"{name}.display_id" for name in REQUEST_OBJECTS), "display_id")


def display_id_candidate(payload: Mapping[str, Any]) -> Any:
    """The request number people see (``display_id``), which the worker resolves to the id."""
    for container in (*(payload.get(name) for name in REQUEST_OBJECTS), payload):
        if isinstance(container, Mapping):
            value = container.get("display_id")
            if value is not None and value != "":
                return value
    return None
