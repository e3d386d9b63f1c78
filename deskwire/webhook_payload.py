"""Where the SDP request sits in a decoded webhook payload, whichever shape the admin built.

The web process finds the request id in it; the worker builds the ``request`` the rules
see with :mod:`sdp.request_shapes`, which follows the same places. A bare ``id`` names the
request only when the event is about a request (a ``change.*`` event's ``id`` is the
change's). The stored payload stays as it was sent; this module only reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    paths += ["WORKORDERID", "workorderid", "request.WORKORDERID", "request.workorderid"]
    if about_request:
        paths.append("id")
    return paths


# Where a request named only by the number people see carries it; the worker finds the
# internal id with a search in SDP (docs/sdp.md).
DISPLAY_ID_SOURCES = ("request.display_id", "requestObj.display_id", "display_id")


def _first(payload: Mapping[str, Any], paths: Iterable[str]) -> tuple[str, Any]:
    for path in paths:
        container: Any = payload
        for part in path.split("."):
            container = container.get(part) if isinstance(container, Mapping) else None
        if container is not None and container != "":
            return path, container
    return "", None


def request_id_candidate(payload: Mapping[str, Any], *, about_request: bool) -> tuple[str, Any]:
    """The first place that holds a request id and its raw value, or ``("", None)``.

    An empty string counts as absent (an SDP variable that was empty for this request).
    """
    return _first(payload, request_id_sources(about_request=about_request))


def display_id_candidate(payload: Mapping[str, Any]) -> tuple[str, Any]:
    """The first place that holds the request's ``display_id`` and its value, or ``("", None)``."""
    return _first(payload, DISPLAY_ID_SOURCES)
