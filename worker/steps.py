"""The actions a rule step can use, one small function each, in one registry.

Each action takes the rendered ``with`` arguments and returns the step's outputs
(``status``, ``json``, ``text``, ``headers``), which later steps read as
``steps.<id>.…``. Failures raise :class:`StepFailed` (final) or :class:`StepRetry`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from connections.errors import ConnectionsError, TransientTokenError
from deskwire.tables import REQUEST_ID
from sdp import SdpClient, SdpError, SdpTransientError
from worker.errors import StepFailed, StepRetry

log = logging.getLogger("deskwire.rules")

MAX_TEXT = 64 * 1024  # the most of a response body kept in run history
HIDDEN_HEADERS = frozenset(
    {"set-cookie", "authorization", "proxy-authorization", "www-authenticate"}
)


class Clients(Protocol):
    """Authenticated HTTP clients and SDP clients by connection link name."""

    def http(self, link: str | None, *, user: str | None = None) -> httpx.Client:
        """An HTTP client, authenticated through ``link`` when one is given."""

    def sdp(self, link: str | None, *, source: str) -> tuple[SdpClient, str]:
        """The SDP client for ``link`` (default: the source's SDP connection) and its link."""


@dataclass(frozen=True)
class StepCall:
    """One step about to run."""

    uses: str
    args: Mapping[str, Any]
    source: str
    user: str | None = None


@dataclass
class StepResult:
    """Outputs of a step, and what it wrote to SDP (for loop prevention)."""

    outputs: dict[str, Any]
    sdp_link: str | None = None
    wrote_request: str | None = None
    wrote_note: str | None = None
    wrote_fields: dict[str, Any] | None = None


Action = Callable[[Clients, StepCall], StepResult]


def redact_url(url: str) -> str:
    """The URL without its query, which may hold an API key placed there."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _with_sdp(
    clients: Clients, call: StepCall, operation: Callable[[SdpClient], dict[str, Any]]
) -> tuple[dict[str, Any], str]:
    """Run one SDP operation on the step's connection; SDP errors become step errors."""
    client, link = clients.sdp(call.args.get("connection"), source=call.source)
    with client:
        try:
            return operation(client), link
        except SdpTransientError as exc:
            raise StepRetry(str(exc), exc.retry_after, http_status=exc.http_status) from None
        except SdpError as exc:
            raise StepFailed(str(exc), http_status=exc.http_status) from None


def _request_id(call: StepCall) -> str:
    value = "" if call.args.get("request_id") is None else str(call.args["request_id"]).strip()
    if not REQUEST_ID.match(value):
        shown = repr(value[:40]) if value else "empty"
        raise StepFailed(f"{call.uses}: request_id is {shown}; SDP request ids are digits")
    return value


def _outputs(body: dict[str, Any]) -> dict[str, Any]:
    return {"status": 200, "json": body, "text": "", "headers": {}}


def sdp_add_note(clients: Clients, call: StepCall) -> StepResult:
    """Add a note to a request."""
    request_id = _request_id(call)
    description = str(call.args["description"])
    note, link = _with_sdp(
        clients,
        call,
        lambda sdp: sdp.add_note(
            request_id,
            description,
            show_to_requester=bool(call.args.get("show_to_requester", False)),
            notify_technician=bool(call.args.get("notify_technician", False)),
        ),
    )
    return StepResult(
        _outputs(note), sdp_link=link, wrote_request=request_id, wrote_note=description
    )


def sdp_update_request(clients: Clients, call: StepCall) -> StepResult:
    """Update fields of a request."""
    request_id = _request_id(call)
    fields = call.args.get("fields")
    if not isinstance(fields, Mapping) or not fields:
        raise StepFailed("sdp.update_request: fields must be a non-empty mapping")
    request, link = _with_sdp(
        clients, call, lambda sdp: sdp.update_request(request_id, dict(fields))
    )
    return StepResult(
        _outputs(request), sdp_link=link, wrote_request=request_id, wrote_fields=dict(fields)
    )


def sdp_add_worklog(clients: Clients, call: StepCall) -> StepResult:
    """Add a worklog to a request."""
    request_id = _request_id(call)
    worklog: dict[str, Any] = {"description": str(call.args["description"])}
    hours, minutes = call.args.get("hours"), call.args.get("minutes")
    if hours is not None or minutes is not None:
        try:
            worklog["time_spent"] = {"hours": int(hours or 0), "minutes": int(minutes or 0)}
        except (TypeError, ValueError):
            raise StepFailed("sdp.add_worklog: hours and minutes must be whole numbers") from None
    if call.args.get("owner"):
        owner = str(call.args["owner"])
        worklog["owner"] = {"email_id": owner} if "@" in owner else {"id": owner}
    created, link = _with_sdp(clients, call, lambda sdp: sdp.add_worklog(request_id, worklog))
    return StepResult(
        _outputs(created),
        sdp_link=link,
        wrote_request=request_id,
        wrote_note=worklog["description"],
    )


def sdp_get_request(clients: Clients, call: StepCall) -> StepResult:
    """Read a whole request."""
    request_id = _request_id(call)
    request, link = _with_sdp(clients, call, lambda sdp: sdp.get_request(request_id))
    return StepResult(_outputs(request), sdp_link=link)


def _expected(call: StepCall, status: int) -> bool:
    expect = call.args.get("expect_status")
    if expect is None:
        return 200 <= status < 300
    allowed = expect if isinstance(expect, list | tuple) else [expect]
    return any(str(status) == str(item).strip() for item in allowed)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def http_call(clients: Clients, call: StepCall) -> StepResult:
    """``http.get|post|put|patch|delete``: one request, optionally through a connection."""
    method = call.uses.split(".", 1)[1].upper()
    url = str(call.args["url"])
    timeout = call.args.get("timeout")
    try:
        with clients.http(call.args.get("connection"), user=call.user) as client:
            response = client.request(
                method,
                url,
                headers={str(k): str(v) for k, v in (call.args.get("headers") or {}).items()},
                params=call.args.get("params"),
                json=call.args.get("json"),
                data=call.args.get("data"),
                timeout=float(timeout) if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
    except httpx.TransportError as exc:
        raise StepRetry(f"{method} {redact_url(url)}: {type(exc).__name__}") from None
    shown = f"{method} {redact_url(url)} answered HTTP {response.status_code}"
    if not _expected(call, response.status_code):
        if response.status_code == 429 or response.status_code >= 500:
            raise StepRetry(shown, _retry_after(response), http_status=response.status_code)
        raise StepFailed(f"{shown}: {response.text[:300]}", http_status=response.status_code)
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    headers = {k: v for k, v in response.headers.items() if k.lower() not in HIDDEN_HEADERS}
    outputs = {
        "status": response.status_code,
        "json": body,
        "text": response.text[:MAX_TEXT],
        "headers": headers,
    }
    return StepResult(outputs)


def log_message(_clients: Clients, call: StepCall) -> StepResult:
    """Write a line to the worker log (``deskwire.rules`` logger)."""
    level = logging.getLevelName(str(call.args.get("level", "info")).upper())
    message = str(call.args["message"])
    log.log(level if isinstance(level, int) else logging.INFO, "%s", message)
    return StepResult({"status": 0, "json": None, "text": message, "headers": {}})


STEPS: dict[str, Action] = {
    "sdp.add_note": sdp_add_note,
    "sdp.update_request": sdp_update_request,
    "sdp.add_worklog": sdp_add_worklog,
    "sdp.get_request": sdp_get_request,
    "http.get": http_call,
    "http.post": http_call,
    "http.put": http_call,
    "http.patch": http_call,
    "http.delete": http_call,
    "log": log_message,
}


def run_step(clients: Clients, call: StepCall) -> StepResult:
    """Run one step through its action."""
    action = STEPS.get(call.uses)
    if action is None:  # the rule loader rejects unknown actions; this guards a mismatch
        raise StepFailed(f"no action named {call.uses!r} in this worker")
    try:
        return action(clients, call)
    except TransientTokenError as exc:
        raise StepRetry(str(exc), exc.retry_after) from None
    except ConnectionsError as exc:  # not connected, needs reconnect, …: names the connection
        raise StepFailed(str(exc)) from None
