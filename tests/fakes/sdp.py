"""A fake SDP Cloud instance and Zoho accounts server, strict like the real APIs.

The fake SDP checks ``Authorization: Zoho-oauthtoken <token>`` against tokens its Zoho
half issued, the v3 ``Accept`` header, and that writes arrive as a form-encoded
``input_data`` JSON field with the documented wrapper keys.

With ``onprem_key`` set it is an on-premises server too: the same API under ``/api/v3``
(no portal), authenticated by the header ``authtoken: <key>``.

Every request carries ``last_updated_time`` (``{"value": "<epoch ms>", "display_value"}``),
which moves forward whenever the request changes: :meth:`FakeSdp.edit_request` (a person
editing it) or an update through the API.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request

ACCEPT = "application/vnd.manageengine.sdp.v3+json"


def _failed(
    http: int, code: int, message: str, field_name: str | None = None
) -> tuple[Response, int]:
    detail: dict[str, Any] = {"status_code": code, "type": "failed", "message": message}
    if field_name:
        detail["field"] = field_name
    body = {"response_status": {"status_code": 4000, "status": "failed", "messages": [detail]}}
    return jsonify(body), http


@dataclass
class FakeSdp:
    """State of the fake: issued tokens, requests, notes, and every call seen."""

    client_id: str = "fake-client"
    client_secret: str = "fake-secret"
    refresh_token: str = "fake-refresh"
    portal: str = "itdesk"
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    worklogs: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    token_requests: int = 0
    # Answers for the next API calls: (http status, SDP code) fails, None lets one pass.
    fail_next: list[tuple[int, int] | None] = field(default_factory=list)
    slow_seconds: float = 0.0
    slow_started: threading.Event = field(default_factory=threading.Event)
    slow_calls: int = 0
    issued: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # On-premises: the technician key the `authtoken` header must carry (None: Cloud only).
    onprem_key: str | None = None
    # Ids of every request read through the API, in order (GET requests/<id>).
    reads: list[str] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)
    clock_ms: int = 1_700_000_000_000

    def edit_request(self, request_id: str, **fields: Any) -> dict[str, Any]:
        """Create or change a request as a person in SDP would; its state moves forward."""
        with self.lock:
            current = self.requests.setdefault(request_id, {"id": request_id})
            current.update(fields)
            self._touch(current)
            return dict(current)

    def _touch(self, stored: dict[str, Any]) -> None:
        self.clock_ms += 1000
        shown = datetime.fromtimestamp(self.clock_ms / 1000, UTC).strftime("%b %d, %Y %I:%M %p")
        stored["last_updated_time"] = {"value": str(self.clock_ms), "display_value": shown}

    def app(self) -> Flask:
        app = Flask("fake-sdp")

        @app.post("/oauth/v2/token")
        def token() -> Response | tuple[Response, int]:
            form = request.form
            with self.lock:
                self.token_requests += 1
            if (
                form.get("client_id") != self.client_id
                or form.get("client_secret") != self.client_secret
            ):
                return jsonify(error="invalid_client"), 200  # Zoho answers errors with 200
            if (
                form.get("grant_type") != "refresh_token"
                or form.get("refresh_token") != self.refresh_token
            ):
                return jsonify(error="invalid_grant"), 200
            access = secrets.token_hex(16)
            with self.lock:
                self.issued.add(access)
            return jsonify(
                access_token=access,
                expires_in=3600,
                api_domain="https://www.zohoapis.com",
                token_type="Bearer",
            )

        @app.get("/slow")
        def slow() -> Response:
            # A third-party service that takes its time (for ordering and crash tests).
            with self.lock:
                self.slow_calls += 1
            self.slow_started.set()
            time.sleep(self.slow_seconds)
            return jsonify(ok=True, calls=self.slow_calls)

        self._add_request_routes(app, f"/app/{self.portal}/api/v3/requests/<request_id>")
        self._add_request_routes(app, "/api/v3/requests/<request_id>", "onprem_")
        return app

    def _check(self) -> tuple[Response, int] | None:
        auth = request.headers.get("Authorization", "")
        onprem = not request.path.startswith("/app/")
        if onprem and (
            self.onprem_key is None or request.headers.get("authtoken") != self.onprem_key
        ):
            return _failed(401, 4022, "Invalid API key")
        if not onprem and (
            not auth.startswith("Zoho-oauthtoken ") or auth.split(" ", 1)[1] not in self.issued
        ):
            return _failed(401, 4022, "Invalid API key")
        if request.headers.get("Accept") != ACCEPT:
            return _failed(400, 4000, f"bad Accept header {request.headers.get('Accept')!r}")
        with self.lock:
            if self.fail_next:
                planned = self.fail_next.pop(0)
                if planned is not None:
                    return _failed(planned[0], planned[1], "injected failure")
        return None

    def _input_data(self, wrapper: str) -> dict[str, Any] | tuple[Response, int]:
        if request.mimetype != "application/x-www-form-urlencoded":
            return _failed(400, 4000, "input_data must be form-encoded")
        raw = request.form.get("input_data")
        if raw is None:
            return _failed(400, 4012, "input_data is missing", "input_data")
        try:
            data = json.loads(raw)
        except ValueError:
            return _failed(400, 4000, "input_data is not JSON", "input_data")
        if not isinstance(data, dict) or not isinstance(data.get(wrapper), dict):
            return _failed(400, 4012, f"{wrapper} is missing", wrapper)
        return dict(data[wrapper])

    def _add_request_routes(self, app: Flask, base: str, prefix: str = "") -> None:
        check, input_data = self._check, self._input_data

        @app.get(base, endpoint=prefix + "get_request")
        def get_request(request_id: str) -> Any:
            if (failure := check()) is not None:
                return failure
            with self.lock:
                self.reads.append(request_id)
                found = self.requests.get(request_id)
            if found is None:
                return _failed(404, 4007, "Invalid URL or resource not found")
            return jsonify(
                response_status={"status_code": 2000, "status": "success"}, request=found
            )

        @app.get(base.removesuffix("/<request_id>"), endpoint=prefix + "list_requests")
        def list_requests() -> Any:
            if (failure := check()) is not None:
                return failure
            try:
                list_info = json.loads(request.args.get("input_data", "{}")).get("list_info", {})
            except (ValueError, AttributeError):
                return _failed(400, 4000, "input_data is not JSON", "input_data")
            criteria = list_info.get("search_criteria") or []
            criteria = [criteria] if isinstance(criteria, dict) else criteria
            with self.lock:
                self.searches.append(list_info)
                found = [
                    r
                    for r in self.requests.values()
                    if all(
                        c.get("condition") == "is"
                        and str(r.get(c.get("field"))) == str(c.get("value"))
                        for c in criteria
                    )
                ]
            rows = int(list_info.get("row_count", 10))
            return jsonify(
                response_status=[{"status_code": 2000, "status": "success"}],
                requests=found[:rows],
                list_info={"has_more_rows": len(found) > rows, "row_count": min(rows, len(found))},
            )

        @app.put(base, endpoint=prefix + "update_request")
        def update_request(request_id: str) -> Any:
            if (failure := check()) is not None:
                return failure
            data = input_data("request")
            if not isinstance(data, dict):
                return data
            with self.lock:
                self.updates.append({"request_id": request_id, **data})
                self.requests.setdefault(request_id, {"id": request_id}).update(data)
                self._touch(self.requests[request_id])
            return jsonify(
                response_status={"status_code": 2000, "status": "success"},
                request=self.requests[request_id],
            )

        @app.post(base + "/notes", endpoint=prefix + "add_note")
        def add_note(request_id: str) -> Any:
            if (failure := check()) is not None:
                return failure
            data = input_data("request_note")
            if not isinstance(data, dict):
                return data
            note = {"id": str(len(self.notes) + 1), "request_id": request_id, **data}
            with self.lock:
                self.notes.append(note)
            return jsonify(
                response_status={"status_code": 2000, "status": "success"}, request_note=note
            ), 201

        @app.post(base + "/worklogs", endpoint=prefix + "add_worklog")
        def add_worklog(request_id: str) -> Any:
            if (failure := check()) is not None:
                return failure
            data = input_data("worklog")
            if not isinstance(data, dict):
                return data
            worklog = {"id": str(len(self.worklogs) + 1), "request_id": request_id, **data}
            with self.lock:
                self.worklogs.append(worklog)
            return jsonify(
                response_status={"status_code": 2000, "status": "success"}, worklog=worklog
            ), 201
