"""Finding a request by its display id, against a loopback SDP that answers as told."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response, jsonify, request

from sdp import SdpClient
from tests.wsgi_server import serving


class SearchingSdp:
    """Answers ``GET requests`` with ``rows`` and records each ``list_info`` it was sent."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.seen: list[dict[str, Any]] = []

    def app(self) -> Flask:
        app = Flask("searching-sdp")

        @app.get("/api/v3/requests")
        def search() -> Response:
            self.seen.append(json.loads(request.args["input_data"])["list_info"])
            return jsonify(
                response_status=[{"status_code": 2000, "status": "success"}],
                requests=self.rows,
                list_info={"has_more_rows": False, "row_count": len(self.rows)},
            )

        return app


@pytest.fixture
def sdp() -> Iterator[tuple[SearchingSdp, SdpClient]]:
    fake = SearchingSdp()
    with serving(fake.app()) as url:
        http = httpx.Client(headers={"authtoken": "tech-key"}, timeout=5)
        with SdpClient(http, f"{url}/api/v3") as client:
            yield fake, client


def test_the_search_asks_for_one_request_by_display_id(
    sdp: tuple[SearchingSdp, SdpClient],
) -> None:
    fake, client = sdp
    fake.rows = [{"id": "90000000001", "display_id": "77", "subject": "VPN"}]
    assert client.find_request_by_display_id("77") == fake.rows[0]
    assert fake.seen == [
        {
            "row_count": 1,
            "start_index": 1,
            "search_criteria": [{"field": "display_id", "condition": "is", "value": "77"}],
        }
    ]


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param([], id="none"),
        pytest.param([{"id": "90000000002", "display_id": "78"}], id="criterion-ignored"),
        pytest.param(["not a request"], id="malformed"),
    ],
)
def test_no_request_with_that_display_id_is_none(
    sdp: tuple[SearchingSdp, SdpClient], rows: list[Any]
) -> None:
    fake, client = sdp
    fake.rows = rows
    assert client.find_request_by_display_id("77") is None


def test_a_display_id_sent_as_a_value_object_is_read(
    sdp: tuple[SearchingSdp, SdpClient],
) -> None:
    fake, client = sdp
    fake.rows = [{"id": "90000000003", "display_id": {"value": "77", "display_value": "77"}}]
    found = client.find_request_by_display_id("77")
    assert found is not None
    assert found["id"] == "90000000003"
