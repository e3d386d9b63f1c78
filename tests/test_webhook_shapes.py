"""Every body shape an SDP admin can build, over real HTTP into the real app and database."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from sdp.request_shapes import request_in_payload
from tests.test_webhooks import TOKEN, events
from tests.test_webhooks import web as web  # the fixture: real app on loopback

FORM = "application/x-www-form-urlencoded"
PATH = "/webhooks/sdp/main/request.updated"


def form(**fields: str) -> bytes:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in fields.items()).encode()


def multipart(fields: dict[str, str], boundary: str = "b0und4ry") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


REQUEST_JSON = json.dumps({"id": "41", "subject": "VPN down"})

# (id, content type or None, body, expected request id, expected request view subset)
SHAPES: list[tuple[str, str | None, bytes, str, dict[str, Any]]] = [
    ("nested-json", "application/json", b'{"request": {"id": "41", "subject": "VPN down"}}', "41",
     {"id": "41", "subject": "VPN down"}),
    ("flat-json-id", "application/json", b'{"id": "41", "subject": "VPN down"}', "41",
     {"id": "41", "subject": "VPN down"}),
    ("flat-json-int-id", "application/json", b'{"id": 41, "subject": "VPN down"}', "41",
     {"id": "41", "subject": "VPN down"}),
    ("flat-json-request_id", "application/json", b'{"request_id": "41", "subject": "VPN down"}',
     "41", {"id": "41", "subject": "VPN down"}),
    ("on-prem-WORKORDERID", "application/json", b'{"WORKORDERID": "41", "SUBJECT": "VPN down"}',
     "41", {"id": "41", "subject": "VPN down"}),
    ("on-prem-workorderid", "application/json", b'{"workorderid": 41}', "41", {"id": "41"}),
    ("form-field-request-json", FORM, form(request=REQUEST_JSON), "41",
     {"id": "41", "subject": "VPN down"}),
    ("form-field-payload-json", FORM, form(payload=json.dumps({"request": {"id": "41"}})), "41",
     {"id": "41"}),
    ("form-field-any-name-json", FORM, form(deluge_map=REQUEST_JSON, event_id="d-1"), "41",
     {"id": "41", "subject": "VPN down"}),
    ("flat-form", FORM, form(id="41", subject="VPN down"), "41",
     {"id": "41", "subject": "VPN down"}),
    ("flat-form-workorderid", FORM, form(WORKORDERID="41"), "41", {"id": "41"}),
    ("bracketed-form", FORM,
     form(**{"request[id]": "41", "request[subject]": "VPN down",
             "request[requester][email_id]": "ada@example.com"}),
     "41", {"id": "41", "subject": "VPN down", "requester": {"email_id": "ada@example.com"}}),
    ("multipart", "multipart/form-data; boundary=b0und4ry",
     multipart({"request[id]": "41", "request[subject]": "VPN down"}), "41",
     {"id": "41", "subject": "VPN down"}),
    ("multipart-json-field", "multipart/form-data; boundary=b0und4ry",
     multipart({"request": REQUEST_JSON}), "41", {"id": "41", "subject": "VPN down"}),
    ("json-as-text-plain", "text/plain", b'{"id": "41", "subject": "VPN down"}', "41",
     {"id": "41", "subject": "VPN down"}),
    ("json-as-octet-stream", "application/octet-stream", b'{"request": {"id": "41"}}', "41",
     {"id": "41"}),
    ("json-no-content-type", None, b'\n {"request_id": 41}', "41", {"id": "41"}),
    ("form-as-text-plain", "text/plain; charset=utf-8", form(id="41", subject="VPN down"), "41",
     {"id": "41", "subject": "VPN down"}),
    ("form-no-content-type", None, form(**{"request[id]": "41"}), "41", {"id": "41"}),
]  # fmt: skip


def send(
    base: str,
    body: bytes,
    content_type: str | None,
    *,
    path: str = PATH,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"X-Deskwire-Token": TOKEN, **(headers or {})}
    if content_type is not None:
        sent["Content-Type"] = content_type
    # httpx adds no Content-Type for raw content, so None really sends none.
    return httpx.post(base + path, content=body, headers=sent, params=params, timeout=10)


@pytest.mark.parametrize(
    ("content_type", "body", "request_id", "view"),
    [pytest.param(*shape[1:], id=shape[0]) for shape in SHAPES],
)
def test_every_shape_is_understood(
    web: Callable[..., str],
    database_url: str,
    content_type: str | None,
    body: bytes,
    request_id: str,
    view: dict[str, Any],
) -> None:
    base = web()
    response = send(base, body, content_type)
    assert response.status_code == 202, response.text
    [event] = events(database_url)
    assert (event.source, event.event_type, event.request_id) == ("main", "request.updated", "41")
    seen = seen_request(event.event_type, event.payload, event.request_id)
    assert {key: seen.get(key) for key in view} == view


def test_event_type_and_id_from_a_nested_json_body(
    web: Callable[..., str], database_url: str
) -> None:
    base = web()
    body = {"event": {"type": "request.closed", "id": "evt-77"}, "request": {"id": "5"}}
    response = send(base, json.dumps(body).encode(), "application/json", path="/webhooks/sdp")
    assert response.status_code == 202, response.text
    assert response.json()["event_id"] == "evt-77"
    [event] = events(database_url)
    assert (event.event_type, event.event_id, event.payload) == ("request.closed", "evt-77", body)


def test_json_body_is_stored_as_sent(web: Callable[..., str], database_url: str) -> None:
    base = web()
    body = {"id": "9", "subject": "flat", "event_id": "as-sent", "extra": [1, {"a": None}]}
    assert send(base, json.dumps(body).encode(), "application/json").status_code == 202
    assert events(database_url)[0].payload == body


SURVIVORS = {
    "quotes": 'He said "it\'s broken" and left',
    "dollar": "costs $5; ask $manager for US$ 10 or $ 3",
    "newlines": "line one\nline two\r\n\ttabbed",
    "html": "<b>bold</b> <script>alert('x')</script> &amp; &lt;",
    "unicode": "Zürich 東京 مرحبا 🚀 e\u0301 \u200d",
    "braces": "{not json} and {{ jinja }}",
}


@pytest.mark.parametrize("shape", ["json", "form", "bracketed", "multipart", "text-plain-form"])
def test_values_survive_every_shape(web: Callable[..., str], database_url: str, shape: str) -> None:
    base = web()
    fields = {"id": "12", **SURVIVORS}
    if shape == "json":
        response = send(base, json.dumps(fields).encode(), "application/json")
    elif shape == "form":
        response = send(base, form(**fields), FORM)
    elif shape == "bracketed":
        response = send(base, form(**{f"request[{k}]": v for k, v in fields.items()}), FORM)
    elif shape == "multipart":
        response = send(base, multipart(fields), "multipart/form-data; boundary=b0und4ry")
    else:
        response = send(base, form(**fields), "text/plain")
    assert response.status_code == 202, response.text
    [event] = events(database_url)
    seen = seen_request(event.event_type, event.payload, event.request_id)
    for key, value in SURVIVORS.items():
        assert seen[key] == value, key


@pytest.mark.parametrize(
    ("content_type", "body", "field", "value"),
    [
        ("application/json", b'{"id": "$id"}', "id", "$id"),
        ("application/json", b'{"request": {"id": "5", "subject": "${subject}"}}',
         "request.subject", "${subject}"),
        ("application/json", b'{"id": "5", "tags": ["ok", "$tag"]}', "tags[1]", "$tag"),
        (FORM, b"id=5&subject=%24subject", "subject", "$subject"),
        (FORM, b"request%5Bid%5D=%24id", "request.id", "$id"),
        (None, b"request_id=%24%7Bid%7D", "request_id", "${id}"),
        ("application/json", b'{"id": "5", "requester": "$requester.email_id"}', "requester",
         "$requester.email_id"),
    ],
)  # fmt: skip
def test_unsubstituted_placeholders_are_refused_naming_the_field(
    web: Callable[..., str],
    database_url: str,
    content_type: str | None,
    body: bytes,
    field: str,
    value: str,
) -> None:
    base = web()
    response = send(base, body, content_type)
    assert response.status_code == 400
    reply = response.json()
    assert reply["error"] == "unsubstituted_placeholder"
    assert f"'{field}'" in reply["message"]
    assert value in reply["message"]
    assert "not substituted" in reply["message"]
    assert events(database_url) == []


def test_an_unsubstituted_event_id_is_refused(web: Callable[..., str]) -> None:
    base = web()
    body = b'{"event_id": "$id-$last_updated_time", "id": "5"}'
    response = send(base, body, "application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "unsubstituted_placeholder"
    assert "event id" in response.json()["message"]


@pytest.mark.parametrize(
    ("content_type", "body", "path", "params"),
    [
        ("application/json", b'{"subject": "no id"}', PATH, None),
        ("application/json", b'{"event": "request.created", "request": {"subject": "x"}}',
         "/webhooks/sdp", None),
        (FORM, b"subject=x&request_id=", PATH, None),
        ("application/json", b"{}", "/webhooks/sdp", {"event": "request"}),
    ],
)  # fmt: skip
def test_a_request_event_without_a_request_id_is_400_naming_where_it_looked(
    web: Callable[..., str],
    database_url: str,
    content_type: str,
    body: bytes,
    path: str,
    params: dict[str, str] | None,
) -> None:
    base = web()
    response = send(base, body, content_type, path=path, params=params)
    assert response.status_code == 400
    reply = response.json()
    assert reply["error"] == "missing_request_id"
    for place in (
        "request_id",
        "request.id",
        "WORKORDERID",
        "request[id]",
        "X-Deskwire-Request-Id",
    ):
        assert place in reply["message"]
    assert events(database_url) == []


@pytest.mark.parametrize("event_type", ["change.created", "problem.updated", "release.closed"])
def test_other_event_types_pass_through_without_a_request_id(
    web: Callable[..., str], database_url: str, event_type: str
) -> None:
    base = web()
    body = {"id": "3001", "title": "Firewall change"}  # the change's id, not a request's
    response = send(
        base, json.dumps(body).encode(), "application/json", path=f"/webhooks/sdp/main/{event_type}"
    )
    assert response.status_code == 202, response.text
    [event] = events(database_url)
    assert (event.event_type, event.request_id, event.payload) == (event_type, None, body)
    assert seen_request(event.event_type, event.payload, event.request_id) == {}


def test_a_change_event_that_names_its_request_keeps_the_request_id(
    web: Callable[..., str], database_url: str
) -> None:
    base = web()
    body = b'{"id": "3001", "request_id": "77"}'
    response = send(base, body, "application/json", path="/webhooks/sdp/main/change.created")
    assert response.status_code == 202
    assert events(database_url)[0].request_id == "77"


def test_the_path_event_type_wins_and_other_places_still_work(
    web: Callable[..., str], database_url: str
) -> None:
    base = web()
    body = b'{"event": "request.created", "id": "1"}'
    assert send(base, body, "application/json").status_code == 202  # path says updated
    by_header = send(
        base, b'{"id": "2"}', "application/json", path="/webhooks/sdp",
        headers={"X-Deskwire-Event": "request.deleted", "X-Deskwire-Request-Id": "ignored"},
    )  # fmt: skip
    assert by_header.status_code == 202
    by_query = send(
        base, b"id=3", FORM, path="/webhooks/sdp/other", params={"event": "request.resolved"}
    )
    assert by_query.status_code == 202
    stored = [(e.source, e.event_type, e.request_id) for e in events(database_url)]
    assert stored == [
        ("main", "request.updated", "1"),
        ("sdp", "request.deleted", "2"),
        ("other", "request.resolved", "3"),
    ]


def test_request_id_from_header_when_the_body_has_none(
    web: Callable[..., str], database_url: str
) -> None:
    base = web()
    response = send(base, b"note=hello", FORM, headers={"X-Deskwire-Request-Id": "88"})
    assert response.status_code == 202
    assert events(database_url)[0].request_id == "88"


@pytest.mark.parametrize(
    ("content_type", "body", "fragment"),
    [
        (FORM, b"request=%7Bbroken", "form field 'request'"),
        (FORM, b"request=5&request%5Bid%5D=6", "plain value"),
        (FORM, b"request%5Bid%5D=6&request=5", "both a value and a group"),
        (FORM, b"a%5B%5D%5Bb%5D=1&id=1", "list"),
        ("multipart/form-data", multipart({"id": "1"}), "boundary"),
        ("multipart/form-data; boundary=zzz", multipart({"id": "1"}), "multipart"),
        (FORM, b"id=%ff", "UTF-8"),
        ("application/json; charset=klingon", b'{"id": 1}', "klingon"),
    ],
)
def test_broken_shapes_are_4xx_with_a_message(
    web: Callable[..., str], database_url: str, content_type: str, body: bytes, fragment: str
) -> None:
    base = web()
    response = send(base, body, content_type)
    assert 400 <= response.status_code < 500
    assert fragment in response.json()["message"]
    assert events(database_url) == []


def seen_request(
    event_type: str, payload: dict[str, Any], request_id: str | None
) -> dict[str, Any]:
    """The request as the worker shows it to rules (before any read from SDP)."""
    return request_in_payload(payload, event_type=event_type, request_id=request_id)


def test_request_the_rules_see_for_each_payload_shape() -> None:
    created = "request.created"
    assert seen_request(created, {"request": {"subject": "x"}}, "5") == {"subject": "x", "id": "5"}
    assert seen_request(created, {"id": "5", "subject": "x", "event": created}, "5") == {
        "id": "5",
        "subject": "x",
    }
    assert seen_request(created, {"WORKORDERID": 5, "SUBJECT": "x", "token": "t"}, "5") == {
        "id": "5",
        "subject": "x",
    }
    assert seen_request(created, {"requestObj": {"id": "5"}}, "5") == {"id": "5"}
    assert seen_request("change.created", {"id": "3001", "title": "change"}, None) == {}


@pytest.mark.parametrize(
    ("path", "params", "headers", "where"),
    [
        ("/webhooks/sdp/main/$event", None, None, "URL path"),
        ("/webhooks/sdp", {"event": "${event}"}, None, "query parameter"),
        (PATH, None, {"X-Deskwire-Request-Id": "$id"}, "X-Deskwire-Request-Id"),
        (PATH, None, {"X-Deskwire-Event-Id": "evt-$id"}, "X-Deskwire-Event-Id"),
    ],
)
def test_placeholders_outside_the_body_are_refused_saying_where(
    web: Callable[..., str],
    database_url: str,
    path: str,
    params: dict[str, str] | None,
    headers: dict[str, str] | None,
    where: str,
) -> None:
    base = web()
    response = send(base, b"note=x", FORM, path=path, params=params, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "unsubstituted_placeholder"
    assert where in response.json()["message"]
    assert events(database_url) == []


def test_a_wrapper_name_holding_plain_text_is_just_a_field(
    web: Callable[..., str], database_url: str
) -> None:
    base = web()
    response = send(base, form(id="5", body="Printer jammed", data="[1, 2]"), FORM)
    assert response.status_code == 202, response.text
    assert events(database_url)[0].payload == {
        "id": "5",
        "body": "Printer jammed",
        "data": "[1, 2]",
    }
