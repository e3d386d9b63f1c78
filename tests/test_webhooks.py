"""The webhook contract over real HTTP: auth, body forms, ids, limits, dedupe, durability."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select

from deskwire.compose import web_app
from deskwire.database import make_engine, session_factory
from deskwire.settings import Settings
from deskwire.tables import Event
from tests.waiting import wait_until
from tests.wsgi_server import serving

TOKEN = "test-token-123"


def make_settings(database_url: str, broker_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "broker_url": broker_url,
        "webhook_tokens": TOKEN,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def web(database_url: str, redis_url: str) -> Iterator[Callable[..., str]]:
    """Start the web app with settings overrides; returns its base URL."""
    stack: list[Any] = []

    def start(**overrides: Any) -> str:
        settings = make_settings(database_url, overrides.pop("broker_url", redis_url), **overrides)
        context = serving(web_app(settings))
        stack.append(context)
        return context.__enter__()

    yield start
    for context in stack:
        context.__exit__(None, None, None)


def events(database_url: str) -> list[Event]:
    with session_factory(make_engine(database_url))() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def post(
    base: str, body: Any = None, *, path: str = "/webhooks/sdp", **kwargs: Any
) -> httpx.Response:
    headers = {"X-Deskwire-Token": TOKEN, **kwargs.pop("headers", {})}
    if body is not None:
        kwargs["json"] = body
    return httpx.post(base + path, headers=headers, timeout=10, **kwargs)


def queued_messages(redis_url: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    return [json.loads(raw) for raw in client.lrange("deskwire", 0, -1)]


def test_json_webhook_is_stored_and_queued_with_only_the_event_id(
    web: Callable[..., str], database_url: str, redis_url: str
) -> None:
    base = web()
    body = {
        "event": "request.created",
        "event_id": "evt-1",
        "request": {"id": "42", "subject": "VPN"},
    }
    response = post(base, body)
    assert response.status_code == 202
    [event] = events(database_url)
    assert response.json() == {"event_id": "evt-1", "id": event.id, "status": "queued"}
    assert (event.status, event.event_type, event.request_id) == ("queued", "request.created", "42")
    assert event.payload == body
    # Marked "dispatched" in a batch off the request path, within about half a second.
    event = wait_until(
        lambda: next((e for e in events(database_url) if e.dispatched_at is not None), None),
        15,
        "the event marked dispatched",
    )
    assert event.dispatched_at is not None
    [message] = queued_messages(redis_url)
    assert message["headers"]["task"] == "deskwire.process_event"
    assert json.loads(__import__("base64").b64decode(message["body"]))[0] == [event.id]


def test_form_fields_and_form_field_holding_json(
    web: Callable[..., str], database_url: str
) -> None:
    base = web()
    first = post(base, data={"event": "request.updated", "request_id": "7", "subject": "x"})
    assert first.status_code == 202
    payload = json.dumps({"event": "request.created", "request": {"id": "8"}})
    second = post(base, data={"payload": payload, "event_id": "form-2"})
    assert second.status_code == 202
    assert second.json()["event_id"] == "form-2"
    stored = events(database_url)
    assert [(e.event_type, e.request_id) for e in stored] == [
        ("request.updated", "7"),
        ("request.created", "8"),
    ]
    assert stored[0].payload["subject"] == "x"


def test_event_type_and_id_from_query_and_headers(
    web: Callable[..., str], database_url: str
) -> None:
    base = web()
    assert (
        post(base, {"request": {"id": "1"}}, params={"event": "request.closed"}).status_code == 202
    )
    response = post(
        base,
        {"request": {"id": "2"}},
        headers={"X-Deskwire-Event": "request.resolved", "X-Deskwire-Event-Id": "hdr-9"},
    )
    assert response.json()["event_id"] == "hdr-9"
    assert [e.event_type for e in events(database_url)] == ["request.closed", "request.resolved"]


def test_on_premises_upper_case_workorderid_is_the_request_id(
    web: Callable[..., str], database_url: str
) -> None:
    base = web()
    assert post(base, {"event": "request.created", "WORKORDERID": 1234}).status_code == 202
    assert events(database_url)[0].request_id == "1234"


def test_repeated_event_id_is_a_duplicate(web: Callable[..., str], database_url: str) -> None:
    base = web()
    body = {"event": "request.created", "event_id": "same", "request_id": "1"}
    assert post(base, body).status_code == 202
    again = post(base, body)
    assert again.status_code == 200
    assert again.json() == {"event_id": "same", "status": "duplicate"}
    assert len(events(database_url)) == 1


def test_same_body_without_id_is_stored_twice_for_the_worker_to_decide(
    web: Callable[..., str], database_url: str
) -> None:
    # An id-only body is the same for every change of its request: no digest dedupe here.
    base = web()
    body = {"event": "request.created", "request": {"id": "5"}}
    first, second = post(base, body), post(base, body)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["event_id"] != second.json()["event_id"]
    stored = events(database_url)
    assert [(e.explicit_id, e.request_id) for e in stored] == [(False, "5"), (False, "5")]


def test_sources_deduplicate_separately(web: Callable[..., str]) -> None:
    base = web()
    body = {"event": "request.created", "event_id": "e1", "request_id": "1"}
    assert post(base, body, path="/webhooks/sdp/portal-a").status_code == 202
    assert post(base, body, path="/webhooks/sdp/portal-b").status_code == 202


def test_after_the_dedupe_window_an_id_is_accepted_again(
    web: Callable[..., str], database_url: str
) -> None:
    base = web(dedupe_window=1)
    body = {"event": "request.created", "event_id": "late", "request_id": "1"}
    assert post(base, body).status_code == 202
    time.sleep(1.2)  # the one-second dedupe window, which the test set, runs out
    assert post(base, body).status_code == 202
    assert len(events(database_url)) == 2


def test_event_is_stored_when_the_broker_is_down(
    web: Callable[..., str], database_url: str
) -> None:
    base = web(broker_url="redis://127.0.0.1:1/0")
    response = post(base, {"event": "request.created", "event_id": "while-down", "id": "1"})
    assert response.status_code == 202
    [event] = events(database_url)
    assert event.status == "queued"
    assert event.dispatched_at is None  # the worker's sweeper sends it later


def concurrently(base: str, count: int) -> list[httpx.Response]:
    """``count`` webhooks posted at once (commit groups form), each about its own event."""

    def one(n: int) -> httpx.Response:
        return post(base, {"event": "request.created", "event_id": f"c-{n}", "id": str(n)})

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_webhooks_each_put_exactly_one_message_in_the_queue(
    web: Callable[..., str], database_url: str, redis_url: str
) -> None:
    base = web()
    broker = redis.Redis.from_url(redis_url)
    broker.config_resetstat()
    responses = concurrently(base, 64)
    assert [r.status_code for r in responses] == [202] * 64
    # One sent again is a duplicate and sends nothing.
    assert post(base, {"event": "request.created", "event_id": "c-0", "id": "0"}).status_code == 200
    stored = events(database_url)
    assert sorted(r.json()["id"] for r in responses) == [e.id for e in stored]
    queued = [json.loads(base64.b64decode(m["body"]))[0][0] for m in queued_messages(redis_url)]
    assert sorted(queued) == [e.id for e in stored]  # each event once
    # Sixteen at a time: some commit groups hold several events, published with one LPUSH.
    assert broker.info("commandstats")["cmdstat_lpush"]["calls"] < 64
    wait_until(
        lambda: all(e.dispatched_at is not None for e in events(database_url)),
        15,
        "every event marked dispatched",
    )


def test_concurrent_webhooks_while_the_broker_is_down_are_stored_for_the_sweeper(
    web: Callable[..., str], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = web(broker_url="redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="webhooks.ingest"):
        responses = concurrently(base, 16)
    assert [r.status_code for r in responses] == [202] * 16
    assert all(r.json()["status"] == "queued" for r in responses)
    stored = events(database_url)
    assert len(stored) == 16
    assert all(e.status == "queued" and e.dispatched_at is None for e in stored)
    warned = [r.getMessage() for r in caplog.records if "will dispatch later" in r.getMessage()]
    assert len(warned) == 16
    assert all("broker unavailable" in message for message in warned)


@pytest.mark.parametrize(
    ("headers", "params", "code"),
    [
        ({}, {}, "missing_token"),
        ({"X-Deskwire-Token": "wrong"}, {}, "bad_token"),
        ({"X-Deskwire-Token": ""}, {"token": "nope"}, "bad_token"),
    ],
)
def test_bad_or_missing_token_is_401(
    web: Callable[..., str],
    database_url: str,
    headers: dict[str, str],
    params: dict[str, str],
    code: str,
) -> None:
    base = web()
    response = httpx.post(
        base + "/webhooks/sdp", json={"event": "x"}, headers=headers, params=params, timeout=10
    )
    assert response.status_code == 401
    assert response.json()["error"] == code
    assert events(database_url) == []


def test_token_in_query_is_accepted(web: Callable[..., str]) -> None:
    base = web()
    response = httpx.post(
        base + "/webhooks/sdp", json={"event": "request.created", "id": 1}, params={"token": TOKEN}
    )
    assert response.status_code == 202


def test_second_configured_token_works(web: Callable[..., str]) -> None:
    base = web(webhook_tokens=f"old-token,{TOKEN}")
    assert post(base, {"event": "request.created", "id": 1}).status_code == 202


def test_no_configured_token_refuses_everything(web: Callable[..., str]) -> None:
    base = web(webhook_tokens="")
    response = post(base, {"event": "request.created"})
    assert response.status_code == 401
    assert "DESKWIRE_WEBHOOK_TOKENS" in response.json()["message"]


def _signed(secret: str, body: bytes, stamp: float) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"{stamp}".encode() + b"." + body, hashlib.sha256)
    return {
        "X-Deskwire-Timestamp": f"{stamp}",
        "X-Deskwire-Signature": f"sha256={digest.hexdigest()}",
        "Content-Type": "application/json",
    }


def test_hmac_signature_valid_bad_stale_and_missing(web: Callable[..., str]) -> None:
    base = web(webhook_hmac_secret="s3cret")
    body = json.dumps({"event": "request.created", "id": 1}).encode()
    now = int(time.time())
    good = post(base, content=body, headers=_signed("s3cret", body, now))
    assert good.status_code == 202
    bad = post(base, content=body, headers=_signed("other", body, now))
    assert (bad.status_code, bad.json()["error"]) == (401, "bad_signature")
    stale = post(base, content=body, headers=_signed("s3cret", body, now - 600))
    assert (stale.status_code, stale.json()["error"]) == (401, "stale_signature")
    missing = post(base, content=body, headers={"Content-Type": "application/json"})
    assert (missing.status_code, missing.json()["error"]) == (401, "missing_signature")


def test_body_over_the_limit_is_413(web: Callable[..., str], database_url: str) -> None:
    base = web(webhook_max_bytes=1024)
    response = post(base, {"event": "request.created", "pad": "x" * 2000})
    assert response.status_code == 413
    assert "1024 bytes" in response.json()["message"]
    assert events(database_url) == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"<event/>"),
        ("application/xml", b'{"event": "request.created", "id": 1}'),
        (None, b"just words"),
        ("application/octet-stream", b"\x00\x01binary"),
    ],
)
def test_unsupported_content_type_is_415(
    web: Callable[..., str], content_type: str | None, body: bytes
) -> None:
    base = web()
    headers = {"Content-Type": content_type} if content_type else {}
    response = post(base, content=body, headers=headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "code", "fragment"),
    [
        (b"{not json", "application/json", "malformed_body", "not valid JSON"),
        (b"[1, 2]", "application/json", "malformed_body", "JSON object"),
        (b"\xff\xfe", "application/json", "malformed_body", "UTF-8"),
        (b'{"request": {"id": 1}}', "application/json", "missing_event_type", "X-Deskwire-Event"),
        (b'{"event": "bad type!"}', "application/json", "bad_event_type", "not valid"),
        (
            b'{"event": "a.b", "event_id": "has space"}',
            "application/json",
            "bad_event_id",
            "spaces",
        ),
        (b"payload=%7Bbroken", "application/x-www-form-urlencoded", "malformed_body", "payload"),
        (b'{"event": ["a"]}', "application/json", "missing_event_type", "event"),
    ],
)
def test_malformed_bodies_are_400_with_a_clear_message(
    web: Callable[..., str],
    database_url: str,
    body: bytes,
    content_type: str,
    code: str,
    fragment: str,
) -> None:
    base = web()
    response = post(base, content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert response.json()["error"] == code
    assert fragment in response.json()["message"]
    assert events(database_url) == []


def test_bad_source_in_url_is_400(web: Callable[..., str]) -> None:
    base = web()
    response = post(base, {"event": "request.created"}, path="/webhooks/sdp/Bad.Source")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_source"


def test_wrong_method_and_unknown_path_answer_json(web: Callable[..., str]) -> None:
    base = web()
    assert httpx.get(base + "/webhooks/sdp").status_code == 405
    missing = httpx.get(base + "/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


def test_health_and_metrics(web: Callable[..., str]) -> None:
    base = web()
    post(base, {"event": "request.created", "id": 1})
    ready = httpx.get(base + "/readyz")
    assert ready.status_code == 200  # this process stores webhooks …
    checks = ready.json()["checks"]
    assert (checks["database"], checks["broker"]) == ("ok", "ok")
    # … but no worker runs in this test: the system as a whole is not healthy.
    health = httpx.get(base + "/healthz")
    assert health.status_code == 503
    assert health.json()["checks"]["workers"].startswith("down: no worker has been seen")
    assert health.json()["checks"]["queue"].startswith("ok; oldest due event waited")
    metrics = httpx.get(base + "/metrics").text
    assert 'deskwire_events{status="queued"} 1' in metrics
    assert "deskwire_worker_up 0" in metrics


def test_health_reports_a_broker_that_is_down(web: Callable[..., str]) -> None:
    base = web(broker_url="redis://127.0.0.1:1/0")
    health = httpx.get(base + "/healthz", timeout=20)
    assert health.status_code == 503
    assert health.json()["checks"]["broker"] == "down"


@pytest.mark.parametrize("request_id", ["../problems/5", "1 2", "x" * 101, "5?a=b"])
def test_request_id_that_is_not_an_id_is_400(
    web: Callable[..., str], database_url: str, request_id: str
) -> None:
    base = web()
    response = post(base, {"event": "request.created", "request": {"id": request_id}})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request_id"
    assert events(database_url) == []
