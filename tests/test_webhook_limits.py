"""Hostile webhook input gets a 4xx (or is stored intact), never a 5xx or a hung worker.

Everything goes over real HTTP to the real app (werkzeug's server in a thread, and the
short-body case also through ``deskwire web``'s gunicorn), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from deskwire.embedded import free_port
from tests.test_webhooks import TOKEN, events
from tests.test_webhooks import web as web  # the fixture: real app on loopback
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
PATH = "/webhooks/sdp/main/request.updated"


def send(
    base: str, body: bytes, content_type: str | None = "application/json", **kwargs: object
) -> httpx.Response:
    headers = {"X-Deskwire-Token": TOKEN}
    if content_type:
        headers["Content-Type"] = content_type
    path = str(kwargs.pop("path", PATH))
    return httpx.post(base + path, content=body, headers=headers, timeout=30, **kwargs)


def nested_json(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b'{"id": 1, "x": ' + b"[" * depth + b"]" * depth + b"}"
    return b'{"id": 1, "x": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


@pytest.mark.parametrize("depth", [33, 990, 5000, 100_000])
@pytest.mark.parametrize("kind", ["array", "object"])
def test_deeply_nested_json_is_400_not_a_recursion_error(
    web: Callable[..., str], database_url: str, depth: int, kind: str
) -> None:
    base = web()
    response = send(base, nested_json(depth, kind))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "too_deep"
    assert events(database_url) == []


def test_nesting_up_to_the_limit_is_stored_intact(
    web: Callable[..., str], database_url: str
) -> None:
    base = web(webhook_max_depth=5)
    ok = {"id": "1", "a": {"b": {"c": {"d": {"e": "deep"}}}}}  # 5 levels with the body
    assert send(base, json.dumps(ok).encode()).status_code == 202
    assert events(database_url)[0].payload == ok
    too_deep = {"id": "1", "a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}
    assert send(base, json.dumps(too_deep).encode()).json()["error"] == "too_deep"
    brackets_in_strings = {"id": "2", "s": "[[[[[[[[[[{{{{{{{{{{" * 100}
    assert send(base, json.dumps(brackets_in_strings).encode()).status_code == 202


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"id=1&r" + b"%5Ba%5D" * 40 + b"=1"),
        (
            "application/x-www-form-urlencoded",
            b"id=1&payload=%7B%22a%22%3A" + b"%5B" * 990 + b"%5D" * 990 + b"%7D",
        ),
        (None, b"id=1&request=" + b"%7B%22a%22%3A" * 990 + b"1" + b"%7D" * 990),
        (
            "multipart/form-data; boundary=xx",
            b'--xx\r\nContent-Disposition: form-data; name="r' + b"[a]" * 40 + b'"\r\n\r\n1\r\n'
            b'--xx\r\nContent-Disposition: form-data; name="id"\r\n\r\n1\r\n--xx--\r\n',
        ),
        (
            "application/x-www-form-urlencoded",  # the JSON is within the limit, under a field not
            b"id=1&request=" + b"%7B%22a%22%3A" * 31 + b"%7B%7D" + b"%7D" * 31,
        ),
    ],
    ids=["bracketed", "json-field-array", "json-field-object", "multipart", "combined"],
)
def test_deep_form_and_multipart_bodies_are_400(
    web: Callable[..., str], database_url: str, content_type: str | None, body: bytes
) -> None:
    base = web()
    response = send(base, body, content_type)
    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("too_deep", "malformed_body")
    assert "deep" in response.json()["message"]
    assert events(database_url) == []


def test_the_last_json_field_that_is_not_json_stays_text(
    web: Callable[..., str], database_url: str
) -> None:
    base = web()
    body = b"id=1&subject=%7Bnot+json%7D&note=x"
    assert send(base, body, "application/x-www-form-urlencoded").status_code == 202
    assert events(database_url)[0].payload["subject"] == "{not json}"


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": 1, "x": NaN}',
        b'{"id": 1, "x": Infinity}',
        b'{"id": 1, "x": -Infinity}',
        b'{"id": 1, "x": [1e999]}',
        b'{"id": 1, "x": -1e400}',
    ],
)
def test_non_standard_json_numbers_are_refused_on_every_database(
    web: Callable[..., str], database_url: str, body: bytes
) -> None:
    base = web()
    response = send(base, body)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_body"
    assert events(database_url) == []
    in_a_form_field = b"payload=" + body.replace(b" ", b"+").replace(b'"', b"%22")
    again = send(base, in_a_form_field, "application/x-www-form-urlencoded")
    assert again.status_code == 400


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"id": 1, "subject": "a\\ud800b"}', "application/json"),
        (b'{"id": 1, "subject": "\\udfff"}', "application/json"),
        (b'{"id": 1, "\\ud800": "key"}', "application/json"),
        (b"id=1&subject=%ED%A0%80", "application/x-www-form-urlencoded"),
        (b'{"id": 1, "subject": "\xed\xa0\x80"}', "application/json"),
    ],
)
def test_lone_surrogates_are_refused_on_every_database(
    web: Callable[..., str], database_url: str, body: bytes, content_type: str
) -> None:
    base = web()
    response = send(base, body, content_type)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_body"
    assert events(database_url) == []


def test_rare_but_valid_text_is_stored_intact_on_every_database(
    web: Callable[..., str], database_url: str
) -> None:
    base = web()
    body = {
        "id": "1",
        "pair": "🚀",  # json.dumps sends it as the escaped surrogate pair \ud83d\ude80
        "nul": "a\u0000b",
        "controls": "\x01\x1f\x7f\u2028\u2029",
        "big": 10**300,
        "tiny": 5e-324,
        "negative_zero": -0.0,
        "bom": "\ufeff",
    }
    response = send(base, json.dumps(body).encode())
    assert response.status_code == 202, response.text
    assert events(database_url)[0].payload == body


@pytest.mark.parametrize(
    ("path", "params", "body"),
    [
        ("/webhooks/sdp/main/request.created%0A", None, b'{"id": 1}'),
        ("/webhooks/sdp", {"event": "request.created\n"}, b'{"id": 1}'),
        ("/webhooks/sdp", {"event": "request.created\r"}, b'{"id": 1}'),
        ("/webhooks/sdp", None, b'{"event": "request.created\\n", "id": 1}'),
        ("/webhooks/sdp", None, b'{"event": "request.\\u0000created", "id": 1}'),
        (PATH, None, b'{"id": 1, "event_id": "abc\\n"}'),
        (PATH, None, b'{"id": 1, "event_id": "abc\\t"}'),
        (PATH, None, b'{"id": 1, "event_id": "\\u00e9t\\u00e9"}'),
        (PATH, None, b'{"id": "5\\n"}'),
        (PATH, None, b'{"request": {"id": "5\\u0000"}}'),
        (PATH, None, b'{"request_id": {"nested": 1}}'),
        (PATH, None, b'{"request_id": 5.5}'),
        ("/webhooks/sdp/main%0A/request.created", None, b'{"id": 1}'),
        ("/webhooks/sdp/main%00", {"event": "request.created"}, b'{"id": 1}'),
    ],
)
def test_control_characters_in_types_ids_and_sources_are_400(
    web: Callable[..., str],
    database_url: str,
    path: str,
    params: dict[str, str] | None,
    body: bytes,
) -> None:
    base = web()
    response = send(base, body, path=path, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"] in (
        "bad_event_type", "bad_event_id", "bad_request_id", "bad_source",
    )  # fmt: skip
    assert events(database_url) == []


def chunked(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_chunked_bodies_over_the_limit_are_413_not_truncated(
    web: Callable[..., str], database_url: str, content_type: str
) -> None:
    base = web(webhook_max_bytes=10_000)
    if content_type == "application/json":
        big = json.dumps({"id": "1", "pad": "x" * 20_000}).encode()
    else:
        big = b"id=1&pad=" + b"x" * 20_000
    response = httpx.post(
        base + PATH,
        content=chunked(big),  # an iterator: httpx sends Transfer-Encoding: chunked
        headers={"X-Deskwire-Token": TOKEN, "Content-Type": content_type},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert events(database_url) == []
    small = b"id=2&pad=" + b"y" * 9_000
    ok = httpx.post(
        base + PATH,
        content=chunked(small),
        headers={"X-Deskwire-Token": TOKEN, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert ok.status_code == 202
    assert events(database_url)[0].payload["pad"] == "y" * 9_000


def test_too_many_form_fields_is_413(web: Callable[..., str], database_url: str) -> None:
    base = web()
    body = b"id=1&" + b"&".join(b"f%d=1" % n for n in range(3000))
    response = send(base, body, "application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert response.json()["error"] == "too_many_fields"
    assert events(database_url) == []


def raw_http(base: str, request: bytes, *, half_close: bool = False) -> tuple[bytes, float]:
    """Send bytes on a raw socket; return the reply and how long it took."""
    address = urlsplit(base)
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    return reply, time.monotonic() - started


def short_body_request(token: str, *, declared: int = 500, sent: bytes = b'{"id": "1", ') -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: localhost\r\nX-Deskwire-Token: {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    return head.encode() + sent


def test_a_body_shorter_than_its_content_length_is_answered_promptly(
    web: Callable[..., str], database_url: str
) -> None:
    base = web()  # the default read timeout (2 s)
    reply, took = raw_http(base, short_body_request(TOKEN))
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert b"incomplete_body" in reply
    assert took < 10
    cut, _ = raw_http(base, short_body_request(TOKEN), half_close=True)
    assert cut.startswith(b"HTTP/1.1 400"), cut[:200]
    assert events(database_url) == []
    # The server is still healthy for the next webhook.
    assert send(base, b'{"id": "7"}').status_code == 202


def test_a_bad_content_length_is_4xx(web: Callable[..., str]) -> None:
    base = web()
    reply, _ = raw_http(
        base,
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Deskwire-Token: {TOKEN}\r\n"
        "Content-Length: 12abc\r\nConnection: close\r\n\r\n{}".encode(),
    )
    status = int(reply.split(b" ", 2)[1])
    assert 400 <= status < 500


@pytest.fixture
def gunicorn_web(tmp_path: Path, redis_url: str) -> Iterator[str]:
    """``deskwire web`` (gunicorn, sync workers) as an operator runs it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKWIRE_")} | {
        "DESKWIRE_BROKER_URL": redis_url,
        "DESKWIRE_DATABASE_URL": f"sqlite:///{tmp_path}/deskwire.db",
        "DESKWIRE_WEBHOOK_TOKENS": TOKEN,
        "DESKWIRE_VAR_DIR": str(tmp_path / "var"),
        "DESKWIRE_RULES_DIR": str(tmp_path / "rules"),
        "DESKWIRE_CONNECTIONS_FILE": str(tmp_path / "connections.yml"),
        "DESKWIRE_SECRET_KEY": "limits-test-secret",
    }
    (tmp_path / "rules").mkdir()
    (tmp_path / "connections.yml").write_text("connections: {}\n")
    subprocess.run(
        [sys.executable, "-m", "deskwire", "db", "upgrade"],
        env=env, cwd=ROOT, check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    log = (tmp_path / "web.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "deskwire", "web", "--port", str(port), "--workers", "1"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "web.log").read_text()
            try:
                # /readyz: this web process serves (no worker runs here, so /healthz is 503).
                return httpx.get(base + "/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(
            ready, 60, lambda: "deskwire web starting: " + (tmp_path / "web.log").read_text()
        )
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.mark.integration
def test_gunicorn_answers_a_short_body_promptly_and_keeps_serving(gunicorn_web: str) -> None:
    reply, took = raw_http(gunicorn_web, short_body_request(TOKEN))
    assert reply.startswith(b"HTTP/1.1 400"), reply[:300]
    assert b"incomplete_body" in reply
    assert took < 10  # the read timeout (2 s), not gunicorn's 60 s worker timeout
    big = json.dumps({"id": "1", "pad": "x" * (2 * 1024 * 1024)}).encode()
    over = httpx.post(
        gunicorn_web + PATH,
        content=chunked(big, 65536),
        headers={"X-Deskwire-Token": TOKEN, "Content-Type": "application/json"},
        timeout=30,
    )
    assert over.status_code == 413
    deep = send(gunicorn_web, nested_json(100_000, "array"))
    assert deep.status_code == 400
    assert send(gunicorn_web, b'{"id": "2"}').status_code == 202
