"""The SDP API v3 client against fake SDP servers over loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response, jsonify, request

from sdp import SdpClient, SdpError, SdpTransientError
from tests.wsgi_server import serving

OK = {"status_code": 2000, "status": "success"}


def _failed(code: int, message: str = "nope", field: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"status_code": code, "type": "failed", "message": message}
    if field:
        detail["field"] = field
    return {"response_status": {"status_code": 4000, "status": "failed", "messages": [detail]}}


class OnPremSdp:
    """An on-premises build: wants the `note` wrapper and answers status lists."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, Any], dict[str, str]]] = []

    def app(self) -> Flask:
        app = Flask("onprem")

        @app.route("/api/v3/<path:path>", methods=["GET", "POST", "PUT"])
        def api(path: str) -> tuple[Response, int] | Response:
            raw = request.form.get("input_data") or request.args.get("input_data")
            data = json.loads(raw) if raw else None
            self.calls.append({"method": request.method, "path": path, "data": data,
                               "authtoken": request.headers.get("authtoken"),
                               "accept": request.headers.get("Accept")})  # fmt: skip
            if self.answers:
                status, body, headers = self.answers.pop(0)
                response = jsonify(body)
                response.headers.update(headers)
                return response, status
            if path.endswith("/notes"):
                if "note" not in (data or {}):
                    return jsonify(_failed(4012, "note is missing", "note")), 400
                return jsonify({"response_status": [OK], "note": {"id": "1", **data["note"]}})
            return jsonify({"response_status": [OK], "request": {"id": path.split("/")[-1]}})

        return app


@pytest.fixture
def onprem() -> Iterator[tuple[OnPremSdp, SdpClient]]:
    fake = OnPremSdp()
    with serving(fake.app()) as url:
        http = httpx.Client(headers={"authtoken": "tech-key"}, timeout=5)
        with SdpClient(http, f"{url}/api/v3", accept="application/v3+json") as client:
            yield fake, client


def test_note_falls_back_to_the_on_premises_wrapper(onprem: tuple[OnPremSdp, SdpClient]) -> None:
    fake, client = onprem
    note = client.add_note("12", "<b>hi</b>", show_to_requester=True)
    assert note["description"] == "<b>hi</b>"
    assert [list(call["data"]) for call in fake.calls] == [["request_note"], ["note"]]
    assert fake.calls[-1]["data"]["note"]["show_to_requester"] is True
    assert fake.calls[-1]["authtoken"] == "tech-key"
    assert fake.calls[-1]["accept"] == "application/v3+json"


def test_get_sends_input_data_as_a_query_and_reads_status_lists(
    onprem: tuple[OnPremSdp, SdpClient],
) -> None:
    fake, client = onprem
    assert client.get_request("77") == {"id": "77"}
    assert fake.calls[-1]["method"] == "GET"


def test_update_sends_the_request_wrapper(onprem: tuple[OnPremSdp, SdpClient]) -> None:
    fake, client = onprem
    client.update_request("5", {"priority": {"name": "High"}, "udf_fields": {"udf_char1": "x"}})
    assert fake.calls[-1]["data"] == {
        "request": {"priority": {"name": "High"}, "udf_fields": {"udf_char1": "x"}}
    }
    assert fake.calls[-1]["method"] == "PUT"


@pytest.mark.parametrize(
    ("status", "body", "headers", "transient", "fragment"),
    [
        (500, _failed(4004, "internal"), {}, True, "4004"),
        (429, _failed(4015, "rate"), {"Retry-After": "7"}, True, "4015"),
        (503, {}, {}, True, "HTTP 503"),
        (400, _failed(4012, "mandatory", "subject"), {}, False, "field subject"),
        (403, _failed(4002, "not permitted"), {}, False, "4002"),
        (200, _failed(4001, "no such status", "status"), {}, False, "field status"),
    ],
)
def test_errors_say_what_failed_and_whether_to_retry(
    onprem: tuple[OnPremSdp, SdpClient],
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    transient: bool,
    fragment: str,
) -> None:
    fake, client = onprem
    fake.answers.append((status, body, headers))
    with pytest.raises(SdpError) as caught:
        client.update_request("5", {"subject": "x"})
    assert isinstance(caught.value, SdpTransientError) is transient
    assert fragment in str(caught.value)
    if "Retry-After" in headers:
        assert caught.value.retry_after == 7.0


def test_unreachable_sdp_is_transient() -> None:
    client = SdpClient(httpx.Client(timeout=2), "http://127.0.0.1:1/api/v3")
    with pytest.raises(SdpTransientError) as caught:
        client.get_request("1")
    assert "no response" in str(caught.value)


def test_an_id_cannot_climb_into_another_part_of_the_api(
    onprem: tuple[OnPremSdp, SdpClient],
) -> None:
    fake, client = onprem
    client.update_request("../problems/5", {"subject": "x"})
    # Sent as one quoted segment under requests/, never resolved to /api/v3/problems/5.
    assert [call["path"] for call in fake.calls] == ["requests/../problems/5"]
