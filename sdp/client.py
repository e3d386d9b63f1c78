"""Calls of the SDP API v3: notes, request updates, worklogs and reads."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from sdp.errors import TRANSIENT_CODES, SdpError, SdpTransientError, message_codes

CLOUD_ACCEPT = "application/vnd.manageengine.sdp.v3+json"


def _response_status(body: Any) -> dict[str, Any]:
    status = body.get("response_status", {}) if isinstance(body, dict) else {}
    # Collections sometimes carry response_status as a list of one object.
    if isinstance(status, list):
        status = status[0] if status and isinstance(status[0], dict) else {}
    return status if isinstance(status, dict) else {}


def _segment(value: str) -> str:
    """One path segment: an id can never climb into another part of the API."""
    return quote(str(value), safe="")


def _display_id(request: dict[str, Any]) -> str:
    value = request.get("display_id")
    if isinstance(value, dict):  # some builds send {"value": …, "display_value": …}
        value = value.get("display_value") or value.get("value")
    return str(value).strip() if value is not None else ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class SdpClient:
    """One SDP instance: ``api_base`` ends in ``/api/v3`` (with ``/app/<portal>`` on Cloud)."""

    def __init__(self, http: httpx.Client, api_base: str, *, accept: str = CLOUD_ACCEPT) -> None:
        self._http = http
        self._api_base = api_base.rstrip("/")
        self._accept = accept

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HTTP client."""
        self._http.close()

    def get_request(self, request_id: str) -> dict[str, Any]:
        """The full request as SDP returns it under ``request``."""
        body = self._call("GET", f"requests/{_segment(request_id)}", "get_request", None)
        request = body.get("request")
        return request if isinstance(request, dict) else {}

    def find_request_by_display_id(self, display_id: str) -> dict[str, Any] | None:
        """The request whose ``display_id`` (the number people see) is ``display_id``.

        Searched through ``GET requests`` with a ``display_id is`` criterion; the result
        carries the internal ``id`` that every other call needs. ``None`` when none has it.
        """
        list_info = {
            "row_count": 1,
            "start_index": 1,
            "search_criteria": [{"field": "display_id", "condition": "is", "value": display_id}],
        }
        body = self._call("GET", "requests", "find_request", {"list_info": list_info})
        found = body.get("requests")
        if not isinstance(found, list):
            return None
        wanted = str(display_id).strip()
        for request in found:
            # A server that ignores the criterion must not make another request the answer.
            if isinstance(request, dict) and _display_id(request) == wanted:
                return request
        return None

    def add_note(
        self,
        request_id: str,
        description: str,
        *,
        show_to_requester: bool = False,
        notify_technician: bool = False,
        mark_first_response: bool = False,
        add_to_linked_requests: bool = False,
    ) -> dict[str, Any]:
        """Add a note (HTML allowed) to a request and return the created note."""
        note = {
            "description": description,
            "show_to_requester": show_to_requester,
            "notify_technician": notify_technician,
            "mark_first_response": mark_first_response,
            "add_to_linked_requests": add_to_linked_requests,
        }
        path = f"requests/{_segment(request_id)}/notes"
        try:
            body = self._call("POST", path, "add_note", {"request_note": note})
        except SdpTransientError:
            raise
        except SdpError as exc:
            # Some on-premises builds name the wrapper `note`; a 400 on the key is the sign.
            if exc.http_status != 400 or not {4000, 4001, 4012} & exc.codes:
                raise
            body = self._call("POST", path, "add_note", {"note": note})
        created = body.get("request_note") or body.get("note") or {}
        return created if isinstance(created, dict) else {}

    def update_request(self, request_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Update fields of a request (lookups as ``{"name": …}``) and return the request."""
        body = self._call(
            "PUT", f"requests/{_segment(request_id)}", "update_request", {"request": fields}
        )
        request = body.get("request")
        return request if isinstance(request, dict) else {}

    def add_worklog(self, request_id: str, worklog: dict[str, Any]) -> dict[str, Any]:
        """Add a worklog (``description``, ``time_spent``, ``owner`` …) to a request."""
        path = f"requests/{_segment(request_id)}/worklogs"
        body = self._call("POST", path, "add_worklog", {"worklog": worklog})
        created = body.get("worklog") or body.get("request_worklog") or {}
        return created if isinstance(created, dict) else {}

    def _call(
        self, method: str, path: str, operation: str, input_data: dict[str, Any] | None
    ) -> dict[str, Any]:
        url = f"{self._api_base}/{path}"  # ids in ``path`` are quoted by the callers
        headers = {"Accept": self._accept}
        encoded = json.dumps(input_data) if input_data is not None else None
        try:
            if method == "GET":
                params = {"input_data": encoded} if encoded else None
                response = self._http.request(method, url, headers=headers, params=params)
            else:
                form = {"input_data": encoded} if encoded else None
                response = self._http.request(method, url, headers=headers, data=form)
        except httpx.TransportError as exc:
            raise SdpTransientError(
                operation, None, [{"message": f"{type(exc).__name__}: {exc}"}]
            ) from None
        return self._read(response, operation)

    @staticmethod
    def _read(response: httpx.Response, operation: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        status = _response_status(body)
        messages = [m for m in status.get("messages", []) if isinstance(m, dict)]
        failed = response.status_code >= 400 or status.get("status") == "failed"
        if not failed and isinstance(body, dict):
            return body
        if not messages:
            snippet = response.text[:200] if body is None else ""
            messages = [{"message": snippet or response.reason_phrase or "failed"}]
        transient = (
            response.status_code == 429
            or response.status_code >= 500
            or bool(message_codes(messages) & TRANSIENT_CODES)
        )
        error_type = SdpTransientError if transient else SdpError
        raise error_type(operation, response.status_code, messages, _retry_after(response))
