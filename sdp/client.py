"""Calls of the SDP API v3: the request operations rules use (see :mod:`sdp.operations`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from connections.retry_after import retry_after_seconds
from sdp.errors import TRANSIENT_CODES, SdpError, SdpTransientError, message_codes
from sdp.fields import (
    FieldValueError,
    custom_fields,
    lookup,
    needs_labels,
    request_fields,
    search_criteria,
    user,
)
from sdp.metainfo import FIELD_LABELS, FieldLabels
from sdp.operations import OPERATIONS

CLOUD_ACCEPT = "application/vnd.manageengine.sdp.v3+json"
PAGE_SIZE = 100  # the most rows SDP returns per page
MAX_ROWS = 1000  # the most rows one search or listing reads, whatever the rule asks
# SDP codes that, with HTTP 400, say the wrapper key was not the one this build expects.
_WRAPPER_CODES = frozenset({4000, 4001, 4012})


def _response_status(body: Any) -> dict[str, Any]:
    status = body.get("response_status", {}) if isinstance(body, dict) else {}
    # Collections sometimes carry response_status as a list of one object.
    if isinstance(status, list):
        status = status[0] if status and isinstance(status[0], dict) else {}
    return status if isinstance(status, dict) else {}


def _segment(value: str) -> str:
    """One path segment: an id can never climb into another part of the API."""
    return quote(str(value), safe="")


def response_failure(response: httpx.Response, operation: str) -> SdpError | None:
    """The error an SDP reply carries, or ``None`` when it succeeded.

    SDP may answer HTTP 200 with ``response_status.status == "failed"``: that is a failure.
    Transient (retry-worthy) failures are :class:`SdpTransientError`.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    status = _response_status(body)
    messages = [m for m in status.get("messages", []) if isinstance(m, dict)]
    failed = response.status_code >= 400 or str(status.get("status", "")).lower() == "failed"
    if not failed:
        return None
    if not messages:
        snippet = response.text[:200] if body is None else ""
        messages = [{"message": snippet or response.reason_phrase or "failed"}]
    transient = (
        response.status_code == 429
        or response.status_code >= 500
        or bool(message_codes(messages) & TRANSIENT_CODES)
    )
    error_type = SdpTransientError if transient else SdpError
    return error_type(operation, response.status_code, messages, retry_after_seconds(response))


def _display_id(request: dict[str, Any]) -> str:
    value = request.get("display_id")
    if isinstance(value, dict):  # some builds send {"value": …, "display_value": …}
        value = value.get("display_value") or value.get("value")
    return str(value).strip() if value is not None else ""


def _first(body: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in body:
            return body[key]
    return None


def _entity(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class SdpClient:
    """One SDP instance: ``api_base`` ends in ``/api/v3`` (with ``/app/<portal>`` on Cloud).

    ``onprem`` selects the on-premises variants (the ``note`` wrapper first). ``labels`` is
    the custom-field label cache (process-wide by default).
    """

    def __init__(
        self,
        http: httpx.Client,
        api_base: str,
        *,
        accept: str = CLOUD_ACCEPT,
        onprem: bool = False,
        labels: FieldLabels = FIELD_LABELS,
    ) -> None:
        self._http = http
        self._api_base = api_base.rstrip("/")
        self._accept = accept
        self._onprem = onprem
        self._labels = labels

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
        """Close the underlying HTTP client (a connection's shared client stays open)."""
        self._http.close()

    # ---- reads -------------------------------------------------------------------------

    def get_request(self, request_id: str) -> dict[str, Any]:
        """The full request as SDP returns it under ``request``."""
        return _entity(self._perform("get_request", request_id, None))

    def search_requests(
        self,
        criteria: Any = None,
        *,
        limit: int = PAGE_SIZE,
        sort_field: str | None = None,
        sort_order: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Requests matching ``criteria`` (see :func:`sdp.fields.search_criteria`).

        Pages are followed (``row_count``/``start_index``, ``has_more_rows``) until ``limit``
        rows (at most :data:`MAX_ROWS`). Returns the rows and whether SDP had more.
        """
        base: dict[str, Any] = {}
        if criteria:
            try:
                base["search_criteria"] = search_criteria(criteria)
            except FieldValueError as exc:
                raise SdpError("search_requests", None, [{"message": str(exc)}]) from None
        if sort_field:
            base["sort_field"] = sort_field
        if sort_order:
            base["sort_order"] = sort_order
        return self._pages("search_requests", None, base, limit)

    def search_page(
        self,
        criteria: Any,
        *,
        start_index: int = 1,
        sort_field: str | None = None,
        sort_order: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page (:data:`PAGE_SIZE` rows from ``start_index``) of requests matching
        ``criteria``, and whether SDP has more: one call, for callers that page themselves
        (reconciliation pages by ``last_updated_time`` and bounds its calls per run)."""
        list_info: dict[str, Any] = {"row_count": PAGE_SIZE, "start_index": max(1, start_index)}
        try:
            list_info["search_criteria"] = search_criteria(criteria)
        except FieldValueError as exc:
            raise SdpError("search_requests", None, [{"message": str(exc)}]) from None
        if sort_field:
            list_info["sort_field"] = sort_field
        if sort_order:
            list_info["sort_order"] = sort_order
        body = self._perform("search_requests", None, list_info, whole=True)
        rows = _first(body, OPERATIONS["search_requests"].results) or []
        page = [row for row in rows if isinstance(row, dict) and row]
        return page, bool(_entity(body.get("list_info")).get("has_more_rows"))

    def find_request_by_display_id(self, display_id: str) -> dict[str, Any] | None:
        """The request whose ``display_id`` (the number people see) is ``display_id``.

        Searched through ``GET requests`` with a ``display_id is`` criterion; the result
        carries the internal ``id`` that every other call needs. ``None`` when none has it.
        """
        wanted = str(display_id).strip()
        criterion = [{"field": "display_id", "condition": "is", "value": wanted}]
        rows, _more = self.search_requests(criterion, limit=1)
        for request in rows:
            # A server that ignores the criterion must not make another request the answer.
            if isinstance(request, dict) and _display_id(request) == wanted:
                return request
        return None

    def list_notes(
        self, request_id: str, *, limit: int = PAGE_SIZE
    ) -> tuple[list[dict[str, Any]], bool]:
        """The notes of a request (pages followed up to ``limit``) and whether SDP had more."""
        return self._pages("list_notes", request_id, {}, limit)

    def request_metainfo(self) -> dict[str, Any]:
        """Field metadata of requests, custom fields included (``GET requests/_metainfo``)."""
        return _entity(self._perform("request_metainfo", None, None))

    # ---- writes ------------------------------------------------------------------------

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
        """Add a note (HTML allowed) to a request and return the created note.

        Cloud wants the wrapper ``request_note``, on-premises builds ``note``: the one of
        this kind of instance goes first, the other only after a 400 that points at it, and
        when both fail the error reported is SDP's answer to the first.
        """
        note = {
            "description": description,
            "show_to_requester": show_to_requester,
            "notify_technician": notify_technician,
            "mark_first_response": mark_first_response,
            "add_to_linked_requests": add_to_linked_requests,
        }
        return _entity(self._perform("add_note", request_id, note))

    def update_request(
        self,
        request_id: str,
        fields: Mapping[str, Any],
        *,
        custom: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Update fields of a request and return it.

        ``fields`` use :func:`sdp.fields.request_fields` (``priority: High``, users by
        email, …); ``custom`` sets custom fields by label or ``udf_`` key, labels resolved
        through the instance's field metadata (cached).
        """
        try:
            body = request_fields(fields)
            if custom:
                labels = (
                    self._labels.labels(self._api_base, self.request_metainfo)
                    if needs_labels(custom)
                    else {}
                )
                udf = dict(body.get("udf_fields") or {})
                udf.update(custom_fields(custom, labels))
                body["udf_fields"] = udf
        except FieldValueError as exc:
            raise SdpError("update_request", None, [{"message": str(exc)}]) from None
        try:
            return _entity(self._perform("update_request", request_id, body))
        except SdpError as exc:
            if custom and needs_labels(custom) and exc.codes & {4001, 4009, 4014}:
                self._labels.forget(self._api_base)  # the fields may have changed in SDP
            raise

    def add_worklog(self, request_id: str, worklog: Mapping[str, Any]) -> dict[str, Any]:
        """Add a worklog (``description``, ``time_spent``, ``owner`` …) to a request.

        ``owner`` may be an email or a numeric id (or a mapping); a name is refused, since
        SDP takes only ``{"id"}`` or ``{"email_id"}`` there.
        """
        body = dict(worklog)
        try:
            if body.get("owner") is not None:
                body["owner"] = user(body["owner"], "owner", allow_name=False)
        except FieldValueError as exc:
            raise SdpError("add_worklog", None, [{"message": str(exc)}]) from None
        return _entity(self._perform("add_worklog", request_id, body))

    def add_task(self, request_id: str, task: Mapping[str, Any]) -> dict[str, Any]:
        """Add a task (``title``, ``description``, ``owner``, ``group``, ``status`` …)."""
        try:
            body = request_fields(task)
        except FieldValueError as exc:
            raise SdpError("add_task", None, [{"message": str(exc)}]) from None
        return _entity(self._perform("add_task", request_id, body))

    def add_resolution(
        self, request_id: str, content: str, *, add_to_linked_requests: bool = False
    ) -> dict[str, Any]:
        """Set the resolution text of a request."""
        resolution = {"content": content, "add_to_linked_requests": add_to_linked_requests}
        return _entity(self._perform("add_resolution", request_id, resolution))

    def close_request(
        self,
        request_id: str,
        *,
        closure_code: Any = None,
        comments: str | None = None,
        requester_ack_resolution: bool | None = None,
        requester_ack_comments: str | None = None,
    ) -> dict[str, Any]:
        """Close a request with its closure information."""
        info: dict[str, Any] = {}
        try:
            if closure_code is not None:
                info["closure_code"] = lookup(closure_code, "closure_code")
        except FieldValueError as exc:
            raise SdpError("close_request", None, [{"message": str(exc)}]) from None
        if comments is not None:
            info["closure_comments"] = comments
        if requester_ack_resolution is not None:
            info["requester_ack_resolution"] = requester_ack_resolution
        if requester_ack_comments is not None:
            info["requester_ack_comments"] = requester_ack_comments
        return _entity(self._perform("close_request", request_id, {"closure_info": info}))

    def assign_request(
        self, request_id: str, *, group: Any = None, technician: Any = None
    ) -> dict[str, Any]:
        """Assign a request to a group and/or a technician (names, ids or emails)."""
        body: dict[str, Any] = {}
        try:
            if group is not None:
                body["group"] = lookup(group, "group")
            if technician is not None:
                body["technician"] = user(technician, "technician")
        except FieldValueError as exc:
            raise SdpError("assign_request", None, [{"message": str(exc)}]) from None
        if not body:
            raise SdpError("assign_request", None, [{"message": "give a group or a technician"}])
        return _entity(self._perform("assign_request", request_id, body))

    def pickup_request(self, request_id: str) -> dict[str, Any]:
        """Assign the request to the technician whose credentials the connection holds."""
        return _entity(self._perform("pickup_request", request_id, None))

    def link_requests(
        self, request_id: str, linked_ids: Sequence[str], *, comments: str | None = None
    ) -> dict[str, Any]:
        """Link other requests to a request."""
        links: list[dict[str, Any]] = []
        for linked in linked_ids:
            link: dict[str, Any] = {"linked_request": {"id": str(linked)}}
            if comments:
                link["comments"] = comments
            links.append(link)
        result = self._perform("link_requests", request_id, links)
        return {"link_requests": result} if isinstance(result, list) else _entity(result)

    # ---- the wire ----------------------------------------------------------------------

    def _pages(
        self, name: str, request_id: str | None, base: dict[str, Any], limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        wanted = max(1, min(int(limit), MAX_ROWS))
        rows: list[dict[str, Any]] = []
        start, more = 1, False
        for _page in range(-(-wanted // PAGE_SIZE) + 1):  # bounded: one spare page at most
            count = min(PAGE_SIZE, wanted - len(rows))
            list_info = {**base, "row_count": count, "start_index": start}
            body = self._perform(name, request_id, list_info, whole=True)
            page = [row for row in (_first(body, OPERATIONS[name].results) or []) if row]
            rows.extend(page[: wanted - len(rows)])
            info = _entity(body.get("list_info"))
            more = bool(info.get("has_more_rows"))
            if not more or not page or len(rows) >= wanted:
                break
            start += len(page)
        return rows, more

    def _perform(
        self, name: str, request_id: str | None, payload: Any, *, whole: bool = False
    ) -> Any:
        """Run one operation of the table: its wrappers and alternate paths, SDP's first
        error when every variant fails. Returns the result object (or the body: ``whole``).
        """
        operation = OPERATIONS[name]
        wrappers: tuple[str | None, ...] = (
            operation.wrappers_for(onprem=self._onprem) if payload is not None else (None,)
        )
        first: SdpError | None = None
        for path in (operation.path, *operation.alternates):
            url_path = path.format(id=_segment(request_id or ""))
            for wrapper in wrappers:
                input_data = {wrapper: payload} if wrapper is not None else None
                try:
                    body = self._call(operation.method, url_path, name, input_data)
                except SdpTransientError:
                    raise
                except SdpError as exc:
                    first = first or exc
                    if exc.http_status == 400 and exc.codes & _WRAPPER_CODES:
                        continue  # maybe the other wrapper key of another build
                    if exc.http_status == 404 or 4007 in exc.codes:
                        break  # maybe the path another version documents
                    raise first from None
                return body if whole else _first(body, operation.results)
            else:
                break  # every wrapper was refused: another path would not do better
        assert first is not None
        raise first

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
        failure = response_failure(response, operation)
        if failure is not None:
            raise failure
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SdpError(operation, response.status_code, [{"message": "reply is not JSON"}])
        return body
