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
from connections.retry_after import retry_after_seconds
from deskwire.tables import REQUEST_ID
from sdp import (
    FieldValueError,
    SdpClient,
    SdpError,
    SdpTransientError,
    request_fields,
    response_failure,
)
from worker.errors import StepFailed, StepRetry
from worker.would_send import Address

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

    def is_sdp(self, link: str) -> bool:
        """Whether ``link`` is a connection to SDP (Cloud or on-premises)."""

    def address(self, link: str | None, *, source: str, sdp: bool) -> Address:
        """Where a call through ``link`` goes (``sdp``: an SDP action, whose default link is
        the source's SDP connection), resolved without credentials, for shadow steps."""


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


def _flag(call: StepCall, name: str) -> bool:
    """A boolean argument; text from a template ("false", "0") means what it says, so a
    note is never shown to a requester because a string was truthy."""
    value = call.args.get(name, False)
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise StepFailed(f"{call.uses}: {name} must be true or false, got {value!r}")


def _optional_text(call: StepCall, name: str) -> str | None:
    value = call.args.get(name)
    return None if value is None else str(value)


def _whole(call: StepCall, name: str) -> int | None:
    value = call.args.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StepFailed(f"{call.uses}: {name} must be a whole number, got {value!r}") from None


def _mapping(call: StepCall, name: str) -> dict[str, Any]:
    value = call.args.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise StepFailed(f"{call.uses}: {name} must be a mapping, got {type(value).__name__}")
    return dict(value)


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
            show_to_requester=_flag(call, "show_to_requester"),
            notify_technician=_flag(call, "notify_technician"),
            mark_first_response=_flag(call, "mark_first_response"),
            add_to_linked_requests=_flag(call, "add_to_linked_requests"),
        ),
    )
    return StepResult(
        _outputs(note), sdp_link=link, wrote_request=request_id, wrote_note=description
    )


def _as_sdp_echoes(reply: Mapping[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """The written fields as SDP's reply shows them (``{"id": "2"}`` sent comes back with
    its name): the webhook SDP sends about this write will carry the same values, which is
    how loop prevention recognises it."""
    return {name: reply.get(name, value) for name, value in sent.items()}


def sdp_update_request(clients: Clients, call: StepCall) -> StepResult:
    """Update fields of a request (friendly lookups, users, custom fields by label)."""
    request_id = _request_id(call)
    fields, custom = _mapping(call, "fields"), _mapping(call, "custom_fields")
    if not fields and not custom:
        raise StepFailed("sdp.update_request: fields and custom_fields are both empty")
    if call.args.get("update_reason") is not None:
        fields["update_reason"] = str(call.args["update_reason"])
    try:
        sent = request_fields(fields)
    except FieldValueError as exc:
        raise StepFailed(f"sdp.update_request: {exc}") from None
    request, link = _with_sdp(
        clients, call, lambda sdp: sdp.update_request(request_id, fields, custom=custom)
    )
    written = _as_sdp_echoes(request, {k: v for k, v in sent.items() if k != "update_reason"})
    if custom:
        written["udf_fields"] = request.get("udf_fields") or custom
    return StepResult(
        _outputs(request), sdp_link=link, wrote_request=request_id, wrote_fields=written
    )


def sdp_add_worklog(clients: Clients, call: StepCall) -> StepResult:
    """Add a worklog to a request."""
    request_id = _request_id(call)
    worklog: dict[str, Any] = {"description": str(call.args["description"])}
    hours, minutes = _whole(call, "hours"), _whole(call, "minutes")
    if hours is not None or minutes is not None:
        worklog["time_spent"] = {"hours": hours or 0, "minutes": minutes or 0}
    if call.args.get("owner") not in (None, ""):
        worklog["owner"] = call.args["owner"]  # email or id; the client refuses a name
    if call.args.get("worklog_type") is not None:
        worklog["worklog_type"] = {"name": str(call.args["worklog_type"])}
    for name in ("start_time", "end_time"):
        if (value := _whole(call, name)) is not None:
            worklog[name] = {"value": value}
    created, link = _with_sdp(clients, call, lambda sdp: sdp.add_worklog(request_id, worklog))
    return StepResult(
        _outputs(created),
        sdp_link=link,
        wrote_request=request_id,
        wrote_note=worklog["description"],
    )


def sdp_add_task(clients: Clients, call: StepCall) -> StepResult:
    """Add a task to a request."""
    request_id = _request_id(call)
    task: dict[str, Any] = {"title": str(call.args["title"])}
    for name in ("description", "owner", "group", "status", "priority"):
        if call.args.get(name) is not None:
            task[name] = call.args[name]
    for name in ("scheduled_start_time", "scheduled_end_time"):
        if (value := _whole(call, name)) is not None:
            task[name] = value
    created, link = _with_sdp(clients, call, lambda sdp: sdp.add_task(request_id, task))
    return StepResult(_outputs(created), sdp_link=link, wrote_request=request_id)


def sdp_add_resolution(clients: Clients, call: StepCall) -> StepResult:
    """Set the resolution of a request."""
    request_id = _request_id(call)
    content = str(call.args["content"])
    resolution, link = _with_sdp(
        clients,
        call,
        lambda sdp: sdp.add_resolution(
            request_id, content, add_to_linked_requests=_flag(call, "add_to_linked_requests")
        ),
    )
    return StepResult(_outputs(resolution), sdp_link=link, wrote_request=request_id)


def sdp_close_request(clients: Clients, call: StepCall) -> StepResult:
    """Close a request with a closure code and comments."""
    request_id = _request_id(call)
    ack = call.args.get("requester_ack_resolution")
    ack = None if ack is None else _flag(call, "requester_ack_resolution")
    request, link = _with_sdp(
        clients,
        call,
        lambda sdp: sdp.close_request(
            request_id,
            closure_code=call.args.get("closure_code"),
            comments=_optional_text(call, "comments"),
            requester_ack_resolution=ack,
            requester_ack_comments=_optional_text(call, "requester_ack_comments"),
        ),
    )
    return StepResult(
        _outputs(request),
        sdp_link=link,
        wrote_request=request_id,
        wrote_fields={"status": {"name": "Closed"}},
    )


def sdp_assign_request(clients: Clients, call: StepCall) -> StepResult:
    """Assign a request to a group and/or a technician."""
    request_id = _request_id(call)
    group, technician = call.args.get("group"), call.args.get("technician")
    try:
        written = request_fields(
            {k: v for k, v in (("group", group), ("technician", technician)) if v is not None}
        )
    except FieldValueError as exc:
        raise StepFailed(f"sdp.assign_request: {exc}") from None
    request, link = _with_sdp(
        clients,
        call,
        lambda sdp: sdp.assign_request(request_id, group=group, technician=technician),
    )
    return StepResult(
        _outputs(request),
        sdp_link=link,
        wrote_request=request_id,
        wrote_fields=_as_sdp_echoes(request, written),
    )


def sdp_pickup_request(clients: Clients, call: StepCall) -> StepResult:
    """Pick up a request as the connection's technician."""
    request_id = _request_id(call)
    request, link = _with_sdp(clients, call, lambda sdp: sdp.pickup_request(request_id))
    return StepResult(_outputs(request), sdp_link=link, wrote_request=request_id)


def sdp_get_request(clients: Clients, call: StepCall) -> StepResult:
    """Read a whole request."""
    request_id = _request_id(call)
    request, link = _with_sdp(clients, call, lambda sdp: sdp.get_request(request_id))
    return StepResult(_outputs(request), sdp_link=link)


def _rows(key: str, rows: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {key: rows, "count": len(rows), "has_more": more}


def sdp_search_requests(clients: Clients, call: StepCall) -> StepResult:
    """Search requests, following pages up to ``limit``."""
    limit = _whole(call, "limit") or 100
    found, link = _with_sdp(
        clients,
        call,
        lambda sdp: _rows(
            "requests",
            *sdp.search_requests(
                call.args.get("criteria"),
                limit=limit,
                sort_field=_optional_text(call, "sort_field"),
                sort_order=_optional_text(call, "sort_order"),
            ),
        ),
    )
    return StepResult(_outputs(found), sdp_link=link)


def sdp_list_notes(clients: Clients, call: StepCall) -> StepResult:
    """List the notes of a request."""
    request_id = _request_id(call)
    limit = _whole(call, "limit") or 100
    found, link = _with_sdp(
        clients, call, lambda sdp: _rows("notes", *sdp.list_notes(request_id, limit=limit))
    )
    return StepResult(_outputs(found), sdp_link=link)


def _flat(value: Any) -> list[Any]:
    """One id, a list of ids, or a list holding one template that rendered to a list."""
    if isinstance(value, list | tuple):
        return [item for part in value for item in _flat(part)]
    return [] if value is None else [value]


def sdp_link_requests(clients: Clients, call: StepCall) -> StepResult:
    """Link other requests to a request."""
    request_id = _request_id(call)
    linked = [str(item).strip() for item in _flat(call.args.get("linked_ids"))]
    bad = [item for item in linked if not REQUEST_ID.match(item)]
    if bad or not linked:
        raise StepFailed(f"sdp.link_requests: linked_ids must be request ids (digits): {bad!r}")
    result, link = _with_sdp(
        clients,
        call,
        lambda sdp: sdp.link_requests(
            request_id, linked, comments=_optional_text(call, "comments")
        ),
    )
    return StepResult(_outputs(result), sdp_link=link, wrote_request=request_id)


def _expected(call: StepCall, status: int) -> bool:
    expect = call.args.get("expect_status")
    if expect is None:
        return 200 <= status < 300
    allowed = expect if isinstance(expect, list | tuple) else [expect]
    return any(str(status) == str(item).strip() for item in allowed)


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
            raise StepRetry(shown, retry_after_seconds(response), http_status=response.status_code)
        raise StepFailed(f"{shown}: {response.text[:300]}", http_status=response.status_code)
    link = call.args.get("connection")
    if link is not None and clients.is_sdp(str(link)):
        # SDP may answer 200 with response_status "failed": through an SDP connection that
        # is the failure it says it is, with SDP's own code, message and field.
        failure = response_failure(response, f"{method} {redact_url(url)}")
        if failure is not None and response.status_code < 400:
            if isinstance(failure, SdpTransientError):
                raise StepRetry(str(failure), failure.retry_after, http_status=response.status_code)
            raise StepFailed(str(failure), http_status=response.status_code)
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
    "sdp.add_task": sdp_add_task,
    "sdp.add_resolution": sdp_add_resolution,
    "sdp.close_request": sdp_close_request,
    "sdp.assign_request": sdp_assign_request,
    "sdp.pickup_request": sdp_pickup_request,
    "sdp.get_request": sdp_get_request,
    "sdp.search_requests": sdp_search_requests,
    "sdp.list_notes": sdp_list_notes,
    "sdp.link_requests": sdp_link_requests,
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
