"""Reading the request from SDP when the webhook does not carry what is needed.

At most one read of the request per event (its result is frozen with the event's inputs
and shared by every rule and by the duplicate decision), plus one search when the body
names the request only by its ``display_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from connections.errors import ConnectionsError, TransientTokenError
from deskwire.tables import REQUEST_ID
from sdp import SdpClient, SdpError, SdpTransientError
from sdp.request_shapes import normalise_request
from worker.errors import StepFailed, StepRetry
from worker.steps import Clients

T = TypeVar("T")


def _with_sdp(clients: Clients, source: str, operation: Callable[[SdpClient], T]) -> T:
    """Run one read on the source's SDP connection; failures become retry or final errors."""
    try:
        client, _link = clients.sdp(None, source=source)
        with client:
            return operation(client)
    except SdpTransientError as exc:
        raise StepRetry(str(exc), exc.retry_after) from None
    except SdpError as exc:
        raise StepFailed(str(exc)) from None
    except TransientTokenError as exc:
        raise StepRetry(str(exc), exc.retry_after) from None
    except ConnectionsError as exc:  # no SDP connection, not connected, …: names it
        raise StepFailed(str(exc)) from None


def fetch_request(clients: Clients, source: str, request_id: str) -> dict[str, Any]:
    """The request as SDP has it now, normalised (:func:`normalise_request`)."""
    request = _with_sdp(clients, source, lambda sdp: sdp.get_request(request_id))
    return normalise_request(request) if request else {}


def resolve_display_id(clients: Clients, source: str, display_id: str) -> str:
    """The internal request id of the request people know as ``display_id``."""
    shown = display_id[:40]
    found = _with_sdp(clients, source, lambda sdp: sdp.find_request_by_display_id(display_id))
    if found is None:
        raise StepFailed(f"SDP has no request with display_id {shown!r}")
    request_id = str(found.get("id", "")).strip()
    if not REQUEST_ID.match(request_id):
        raise StepFailed(
            f"SDP's request with display_id {shown!r} has no usable id ({request_id[:40]!r})"
        )
    return request_id
