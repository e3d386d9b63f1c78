"""Ingest of bodies that name the request by its display id or in upper-case nested keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.test_webhooks import events, post
from tests.test_webhooks import web as web  # the fixture: real app on loopback


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"request": {"display_id": "77"}}, id="nested"),
        pytest.param({"requestObj": {"display_id": 77, "subject": "x"}}, id="requestObj"),
        pytest.param({"display_id": "77"}, id="flat"),
    ],
)
def test_a_request_named_by_its_display_id_is_accepted_for_the_worker(
    web: Callable[..., str], database_url: str, body: dict[str, Any]
) -> None:
    base = web()
    response = post(base, {"event": "request.updated", **body})
    assert response.status_code == 202, response.text
    [event] = events(database_url)
    assert event.request_id is None  # the worker finds the internal id in SDP


def test_a_bad_display_id_is_refused_and_named(web: Callable[..., str], database_url: str) -> None:
    base = web()
    response = post(base, {"event": "request.updated", "request": {"display_id": "7 7"}})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request_id"
    assert "request.display_id" in response.json()["message"]
    assert events(database_url) == []


def test_a_missing_request_id_names_the_display_id_places_too(web: Callable[..., str]) -> None:
    response = post(web(), {"event": "request.updated", "request": {"subject": "x"}})
    assert response.status_code == 400
    assert "request.display_id" in response.json()["message"]


def test_upper_case_workorderid_inside_request_is_the_request_id(
    web: Callable[..., str], database_url: str
) -> None:
    body = {"event": "request.updated", "request": {"WORKORDERID": "5003", "SUBJECT": "x"}}
    assert post(web(), body).status_code == 202
    assert events(database_url)[0].request_id == "5003"
