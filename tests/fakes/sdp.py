"""A fake SDP (Cloud with its Zoho accounts half, or on-premises), strict like the real APIs.

As ``sdp-api.md`` says the real ones behave:

* Cloud: ``Authorization: Zoho-oauthtoken <token>`` from tokens its Zoho half issued (the
  one fake provider, ``tests.fakes.oauth.FakeOAuth`` in Zoho mode, on the same server), API
  under ``/app/<portal>/api/v3``. On-premises, under ``/api/v3`` of the same server: the
  technician key in the ``authtoken`` header (or ``key_header``, e.g. ``TECHNICIAN_KEY``);
  enabled by ``onprem=True`` (key ``technician_key``) or by setting ``onprem_key``.
* The v3 ``Accept`` header; ``input_data`` as a form field (a query parameter on GET, and
  accepted there on POST/PUT too) holding JSON under the documented wrapper key: the note
  wrapper is ``request_note`` on Cloud and ``note`` on-premises.
* ``response_status`` as an object, or as a list of one object on collections; errors with
  the codes of the table (4001 naming the field, 4007 for unknown URLs, 4012 with ``field``).
* Lookups must be ``{"name"}``/``{"id"}``, users ``{"email_id"}``/``{"id"}``/``{"name"}``; a
  non-numeric ``{"id"}`` is refused (4001) as SDP does.

``calls`` records every API call (method, path, wrapper keys, ``input_data``, auth header).
Every request carries ``last_updated_time`` (``{"value": "<epoch ms>", "display_value"}``),
which moves forward whenever the request changes: :meth:`FakeSdp.edit_request` (a person
editing it) or a write through the API.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request

from tests.fakes.oauth import FakeOAuth

ACCEPT = "application/vnd.manageengine.sdp.v3+json"
OK = {"status_code": 2000, "status": "success"}
LOOKUPS = ("status", "priority", "urgency", "impact", "mode", "level", "site", "group",
           "category", "subcategory", "item", "template", "closure_code")  # fmt: skip
USERS = ("requester", "technician", "owner")
# Custom fields of the fake instance: API key → label shown in SDP.
UDF_LABELS = {"udf_char1": "Asset Tag", "udf_long1": "Parent Ticket"}

Failure = tuple[Response, int]


def _failed(http: int, code: int, message: str, field_name: str | None = None) -> Failure:
    detail: dict[str, Any] = {"status_code": code, "type": "failed", "message": message}
    if field_name:
        detail["field"] = field_name
    body = {"response_status": {"status_code": 4000, "status": "failed", "messages": [detail]}}
    return jsonify(body), http


def _ok(status: int = 200, listing: bool = False, **body: Any) -> Failure:
    return jsonify(response_status=[OK] if listing else OK, **body), status


def _bad_value(data: dict[str, Any], prefix: str = "") -> Failure | None:
    """SDP's 4001 for a lookup or user that is not in one of its accepted shapes."""
    for name in LOOKUPS + USERS:
        if name not in data:
            continue
        value = data[name]
        keys = ("name", "id", "email_id") if name in USERS else ("name", "id")
        if not isinstance(value, dict) or not any(k in value for k in keys):
            return _failed(400, 4001, f"{name} must be an object with {' or '.join(keys)}",
                           prefix + name)  # fmt: skip
        if "id" in value and not str(value["id"]).isdigit():
            return _failed(400, 4001, f"{name}: no such id {value['id']!r}", prefix + name)
    for key in data.get("udf_fields") or {}:
        if key not in UDF_LABELS:
            return _failed(400, 4001, f"{key} is not a field", f"udf_fields.{key}")
    return None


@dataclass
class FakeSdp:
    """State of the fake: issued tokens, requests, notes, and every call seen."""

    client_id: str = "fake-client"
    client_secret: str = "fake-secret"
    refresh_token: str = "fake-refresh"
    portal: str = "itdesk"
    onprem: bool = False
    technician_key: str = "fake-technician-key"
    key_header: str = "authtoken"
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    worklogs: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    token_lifetime: int = 3600  # expires_in of the access tokens it issues, in seconds
    metainfo_calls: int = 0
    # Answers for the next API calls: (http status, SDP code[, field]) fails, None passes.
    fail_next: list[tuple[int, int] | tuple[int, int, str] | None] = field(default_factory=list)
    retry_after: str | None = None  # sent with injected failures when set
    slow_seconds: float = 0.0
    slow_started: threading.Event = field(default_factory=threading.Event)
    slow_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # On-premises beside Cloud: the technician key the `authtoken` header must carry.
    onprem_key: str | None = None
    # Ids of every request read through the API, in order (GET requests/<id>).
    reads: list[str] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)
    searched_at: list[float] = field(default_factory=list)  # monotonic time of each search
    clock_ms: int = 1_700_000_000_000
    accounts: FakeOAuth = field(init=False)  # the Zoho accounts half: the one fake provider

    def __post_init__(self) -> None:
        self.accounts = FakeOAuth(
            self.client_id, self.client_secret, zoho=True, expires_in=self.token_lifetime
        )
        self.accounts.refresh_tokens.add(self.refresh_token)

    @property
    def issued(self) -> set[str]:
        """The access tokens its Zoho half issued (the API takes these; a test may add)."""
        return self.accounts.access_tokens

    @property
    def token_requests(self) -> int:
        """How many times a token was asked for with a refresh token."""
        return self.accounts.refresh_calls

    @property
    def api_prefix(self) -> str:
        """The path of the API base on this fake (joined to its URL)."""
        return "/api/v3" if self.onprem else f"/app/{self.portal}/api/v3"

    def edit_request(self, request_id: str, **fields: Any) -> dict[str, Any]:
        """Create or change a request as a person in SDP would; its state moves forward.

        A new request gets ``created_time`` equal to its first ``last_updated_time``. The
        test decides whether SDP "sends" the webhook of the change (or drops it).
        """
        with self.lock:
            new = request_id not in self.requests
            current = self.requests.setdefault(request_id, {"id": request_id})
            current.update(fields)
            self._touch(current)
            if new:
                current["created_time"] = dict(current["last_updated_time"])
            return dict(current)

    def _touch(self, stored: dict[str, Any]) -> None:
        self.clock_ms += 1000
        shown = datetime.fromtimestamp(self.clock_ms / 1000, UTC).strftime("%b %d, %Y %I:%M %p")
        stored["last_updated_time"] = {"value": str(self.clock_ms), "display_value": shown}

    def app(self) -> Flask:
        app = Flask("fake-sdp")
        self.accounts.add_routes(app)  # /oauth/v2/token and the rest of a provider

        @app.get("/slow")
        def slow() -> Response:
            # A third-party service that takes its time (for ordering and crash tests).
            with self.lock:
                self.slow_calls += 1
            self.slow_started.set()
            time.sleep(self.slow_seconds)  # the slow service under test
            return jsonify(ok=True, calls=self.slow_calls)

        methods = ["GET", "POST", "PUT", "DELETE"]

        @app.route(f"/app/{self.portal}/api/v3/<path:path>", methods=methods)
        def cloud_api(path: str) -> Failure:
            return self._api(path, onprem=False)

        @app.route("/api/v3/<path:path>", methods=methods)
        def onprem_api(path: str) -> Failure:
            return self._api(path, onprem=True)

        @app.errorhandler(404)
        def not_found(_error: Exception) -> Failure:
            return _failed(404, 4007, "Invalid URL or resource not found")

        return app

    # ---- the API -----------------------------------------------------------------------

    def _authorised(self, onprem: bool) -> Failure | None:
        if onprem:
            key = self.onprem_key or (self.technician_key if self.onprem else None)
            if key is None or request.headers.get(self.key_header) != key:
                return _failed(401, 4022, "Invalid API key")
        else:
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Zoho-oauthtoken ") or auth.split(" ", 1)[1] not in self.issued:
                return _failed(401, 4022, "Invalid API key")
        if request.headers.get("Accept") != ACCEPT:
            return _failed(400, 4000, f"bad Accept header {request.headers.get('Accept')!r}")
        with self.lock:
            planned = self.fail_next.pop(0) if self.fail_next else None
        if planned is not None:
            response, status = _failed(planned[0], planned[1], "injected failure",
                                       planned[2] if len(planned) > 2 else None)  # fmt: skip
            if self.retry_after:
                response.headers["Retry-After"] = self.retry_after
            return response, status
        return None

    def _input(self) -> dict[str, Any] | Failure:
        if (
            request.method != "GET"
            and request.content_length
            and (request.mimetype != "application/x-www-form-urlencoded")
        ):
            return _failed(400, 4000, "input_data must be form-encoded")
        raw = request.form.get("input_data") or request.args.get("input_data")
        if raw is None:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            return _failed(400, 4000, "input_data is not JSON", "input_data")
        if not isinstance(data, dict):
            return _failed(400, 4000, "input_data must be a JSON object", "input_data")
        return data

    def _api(self, path: str, *, onprem: bool) -> Failure:
        data = self._input()
        self.calls.append({
            "method": request.method, "path": path,
            "keys": sorted(data) if isinstance(data, dict) else None,
            "data": data if isinstance(data, dict) else None,
            "auth": request.headers.get(self.key_header if onprem else "Authorization"),
        })  # fmt: skip
        if (failure := self._authorised(onprem)) is not None:
            return failure
        if not isinstance(data, dict):
            return data
        for pattern, method, handler in self._routes():
            match = re.fullmatch(pattern, path)
            if match and request.method == method:
                result: Failure = handler(data, *match.groups())
                return result
        return _failed(404, 4007, "Invalid URL or resource not found")

    def _routes(self) -> list[tuple[str, str, Any]]:
        rid = r"requests/(\d+)"
        return [
            (r"requests", "GET", self._search),
            (r"requests/_metainfo", "GET", self._metainfo),
            (rid, "GET", self._get),
            (rid, "PUT", self._update),
            (rid + "/notes", "POST", self._add_note),
            (rid + "/notes", "GET", self._list_notes),
            (rid + "/worklogs", "POST", self._add_worklog),
            (rid + "/tasks", "POST", self._add_task),
            (rid + "/resolutions", "POST", self._add_resolution),
            (rid + "/close", "PUT", self._close),
            (rid + "/assign", "PUT", self._assign),
            (rid + "/pickup", "PUT", self._pickup),
            (rid + "/link_requests", "POST", self._link),
        ]

    @staticmethod
    def _wrapped(data: dict[str, Any], wrapper: str) -> dict[str, Any] | Failure:
        if not isinstance(data.get(wrapper), dict):
            return _failed(400, 4012, f"{wrapper} is missing", wrapper)
        return dict(data[wrapper])

    def _known(self, request_id: str) -> dict[str, Any] | Failure:
        if request_id not in self.requests:
            return _failed(404, 4007, "Invalid URL or resource not found")
        return self.requests[request_id]

    def _get(self, _data: dict[str, Any], request_id: str) -> Failure:
        with self.lock:
            self.reads.append(request_id)
        found = self._known(request_id)
        return found if isinstance(found, tuple) else _ok(request=found)

    def _update(self, data: dict[str, Any], request_id: str) -> Failure:
        fields = self._wrapped(data, "request")
        if isinstance(fields, tuple):
            return fields
        if (bad := _bad_value(fields)) is not None:
            return bad
        with self.lock:
            self.updates.append({"request_id": request_id, **fields})
            current = self.requests.setdefault(request_id, {"id": request_id})
            udf = fields.pop("udf_fields", None)
            current.update(fields)
            if udf:
                current.setdefault("udf_fields", {}).update(udf)
            self._touch(current)
        return _ok(request=self.requests[request_id])

    def _add_note(self, data: dict[str, Any], request_id: str) -> Failure:
        wrapper = "note" if request.path.startswith("/api/") else "request_note"
        body = self._wrapped(data, wrapper)
        if isinstance(body, tuple):
            return body
        note = {"id": str(len(self.notes) + 1), "request_id": request_id, **body}
        with self.lock:
            self.notes.append(note)
        return _ok(201, **{wrapper: note})

    def _list_notes(self, data: dict[str, Any], request_id: str) -> Failure:
        rows = [n for n in self.notes if n["request_id"] == request_id]
        return self._page(data, rows, "notes")

    def _add_worklog(self, data: dict[str, Any], request_id: str) -> Failure:
        body = self._wrapped(data, "worklog")
        if isinstance(body, tuple):
            return body
        if (bad := _bad_value(body)) is not None:
            return bad
        worklog = {"id": str(len(self.worklogs) + 1), "request_id": request_id, **body}
        with self.lock:
            self.worklogs.append(worklog)
        return _ok(201, worklog=worklog)

    def _add_task(self, data: dict[str, Any], request_id: str) -> Failure:
        body = self._wrapped(data, "task")
        if isinstance(body, tuple):
            return body
        if not body.get("title"):
            return _failed(400, 4012, "title is mandatory", "title")
        if (bad := _bad_value(body)) is not None:
            return bad
        task = {"id": str(len(self.tasks) + 1), "request_id": request_id, **body}
        with self.lock:
            self.tasks.append(task)
        return _ok(201, task=task)

    def _add_resolution(self, data: dict[str, Any], request_id: str) -> Failure:
        body = self._wrapped(data, "resolution")
        if isinstance(body, tuple):
            return body
        with self.lock:
            self.requests.setdefault(request_id, {"id": request_id})["resolution"] = body
        return _ok(resolution=body)

    def _close(self, data: dict[str, Any], request_id: str) -> Failure:
        body = self._wrapped(data, "request")
        if isinstance(body, tuple):
            return body
        info = body.get("closure_info")
        if not isinstance(info, dict):
            return _failed(400, 4012, "closure_info is missing", "closure_info")
        if (bad := _bad_value(info, "closure_info.")) is not None:
            return bad
        with self.lock:
            current = self.requests.setdefault(request_id, {"id": request_id})
            current.update(status={"name": "Closed"}, closure_info=info)
            self._touch(current)
        return _ok(request=self.requests[request_id])

    def _assign(self, data: dict[str, Any], request_id: str) -> Failure:
        body = self._wrapped(data, "request")
        if isinstance(body, tuple):
            return body
        if (bad := _bad_value(body)) is not None:
            return bad
        with self.lock:
            current = self.requests.setdefault(request_id, {"id": request_id})
            current.update(body)
            self._touch(current)
        return _ok(request=self.requests[request_id])

    def _pickup(self, _data: dict[str, Any], request_id: str) -> Failure:
        with self.lock:
            current = self.requests.setdefault(request_id, {"id": request_id})
            current["technician"] = {"id": "1", "name": "API technician"}
            self._touch(current)
        return _ok(request=current)

    def _link(self, data: dict[str, Any], request_id: str) -> Failure:
        links = data.get("link_requests")
        if not isinstance(links, list) or not links:
            return _failed(400, 4012, "link_requests is missing", "link_requests")
        for link in links:
            linked = (link or {}).get("linked_request") or {}
            if str(linked.get("id")) not in self.requests:
                return _failed(400, 4001, f"no request {linked.get('id')!r}", "linked_request")
        with self.lock:
            self.links.extend({"request_id": request_id, **link} for link in links)
        return _ok(link_requests=links)

    def _metainfo(self, _data: dict[str, Any]) -> Failure:
        with self.lock:
            self.metainfo_calls += 1
        udf = {key: {"display_name": label, "type": "string"} for key, label in UDF_LABELS.items()}
        fields = {"subject": {"display_name": "Subject"}, "udf_fields": {"fields": udf}}
        return _ok(metainfo={"name": "request", "fields": fields})

    def _search(self, data: dict[str, Any]) -> Failure:
        info = data.get("list_info") or {}
        with self.lock:
            self.searches.append(info)
            self.searched_at.append(time.monotonic())
        criteria = info.get("search_criteria")
        criteria = [criteria] if isinstance(criteria, dict) else criteria
        rows = [r for r in self.requests.values() if _matches(r, criteria)]
        if info.get("sort_field"):
            key = str(info["sort_field"])
            rows.sort(key=lambda r: _sortable(_path(r, key)),
                      reverse=info.get("sort_order") == "desc")  # fmt: skip
        return self._page(data, rows, "requests")

    @staticmethod
    def _page(data: dict[str, Any], rows: list[dict[str, Any]], key: str) -> Failure:
        info = data.get("list_info") or {}
        count, start = int(info.get("row_count", 10)), int(info.get("start_index", 1))
        if count > 100:
            return _failed(400, 4016, "row_count must be at most 100", "row_count")
        page = rows[start - 1 : start - 1 + count]
        more = start - 1 + count < len(rows)
        list_info = {"row_count": len(page), "start_index": start, "has_more_rows": more}
        return _ok(listing=True, list_info=list_info, **{key: page})


def _path(row: dict[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _sortable(value: Any) -> tuple[int, str]:
    """Date-times (``{"value": "<ms>"}``) sort by their time, other values as text."""
    if isinstance(value, dict) and str(value.get("value", "")).isdigit():
        return int(value["value"]), ""
    return 0, str(value)


# SDP's comparison conditions on date-times (epoch ms values).
_COMPARE = {
    "greater than": lambda a, b: a > b,
    "greater or equal": lambda a, b: a >= b,
    "lesser than": lambda a, b: a < b,
    "lesser or equal": lambda a, b: a <= b,
}


def _matches(row: dict[str, Any], criteria: Any) -> bool:
    """SDP's ``is`` / ``contains`` criteria and comparisons of date-times (AND only):
    enough for the tests."""
    for item in criteria or []:
        value = _path(row, item["field"])
        wanted = item.get("values", [item.get("value")])
        compare = _COMPARE.get(item["condition"])
        if compare is not None and not compare(_sortable(value)[0], int(item["value"])):
            return False
        if item["condition"] == "is" and str(value) not in [str(w) for w in wanted]:
            return False
        if item["condition"] == "contains" and not any(
            str(w).lower() in str(value or "").lower() for w in wanted
        ):
            return False
    return True
