"""Secret scan: a full run with known secret values leaves none of them behind.

Real parts: ``deskwire web`` (gunicorn) and ``deskwire worker`` processes on Redis and the
test database, a fake SDP (Zoho OAuth 2.0), and an echo service that returns every header,
query and body it was sent (so a careless run history would store the credentials it was
called with). After webhooks, rule steps through an API key, a Basic and the SDP
connection, a failing step that quotes the request, and the admin browsing every
connection page, the scan searches the logs, every row of every table, every key and value
in Redis, and the pages' HTML for each secret value: zero hits.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from flask import Flask, Response, request
from sqlalchemy import MetaData, select

from deskwire.database import make_engine
from tests.fakes.sdp import FakeSdp
from tests.integration import ROOT, sdp_connections_yaml
from tests.waiting import wait_until
from tests.web_process import web_process
from tests.wsgi_server import serving

pytestmark = pytest.mark.integration

WEBHOOK_TOKEN = "scan-webhook-token-5e1f0a9b"
SECRET_KEY = "scan-secret-key-77c2d4e1"
ADMIN_PASSWORD = "scan-admin-password-a3b9f2"
CLIENT_SECRET = "scan-client-secret-0d8e6c"
REFRESH_TOKEN = "scan-refresh-token-9b7a15"
API_KEY = "scan-api-key-4c2f8d"
BASIC_PASSWORD = "scan-basic-password-e6a1b7"

RULES = """\
rules:
  - id: everything
    on: [request.created]
    actions:
      - id: read
        uses: sdp.get_request
        with: {request_id: "{{ request.id }}"}
      - id: keyed
        uses: http.get
        with: {connection: echo_key, url: /echo, params: {q: "{{ request.id }}"}}
      - id: basic
        uses: http.post
        with: {connection: echo_basic, url: /echo, json: {subject: "{{ request.subject }}"}}
      - id: refused
        uses: http.get
        on_error: continue
        with: {connection: echo_key, url: /refuse}
      - id: tell
        uses: log
        with: {message: "echo said {{ steps.keyed.json }} and {{ steps.basic.text }}"}
      - uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Echo: {{ steps.keyed.text[:300] }}"
"""

SERVICES = """\
services:
  echo_keyed:
    name: Echo (API key)
    auth: api_key
    base_url: {echo}
    params:
      - {{name: X-Api-Key, display_name: API key, placement: header}}
  echo_plain:
    name: Echo (Basic)
    auth: basic
    base_url: {echo}
"""

CONNECTIONS = """\
  echo_key:
    name: Echo with a key
    service: echo_keyed
    values: {X-Api-Key: "${ECHO_API_KEY}"}
  echo_basic:
    name: Echo with a password
    service: echo_plain
    values: {username: ops, password: "${ECHO_PASSWORD}"}
"""


def echo_app() -> Flask:
    """Answers with everything it was sent: the worst case for a run history."""
    app = Flask("echo")

    def everything() -> dict[str, Any]:
        return {
            "headers": dict(request.headers),
            "query": request.query_string.decode(),
            "body": request.get_data(as_text=True),
        }

    @app.route("/echo", methods=["GET", "POST"])
    def echo() -> Response:
        reply = Response(json.dumps(everything()), content_type="application/json")
        reply.headers["X-Echo-Authorization"] = request.headers.get("Authorization", "")
        return reply

    @app.get("/refuse")
    def refuse() -> Response:
        return Response(json.dumps(everything()), status=400, content_type="application/json")

    return app


def redis_dump(client: redis.Redis) -> str:
    """Every key and value, with kombu's base64 message bodies decoded too."""
    parts: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        values: list[Any]
        if kind == "string":
            values = [client.get(key)]
        elif kind == "hash":
            values = [item for pair in client.hgetall(key).items() for item in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        else:
            values = [f"<{kind}>"]
        parts.append(key.decode(errors="replace"))
        for value in values:
            text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            parts.append(text)
            parts.extend(_decoded_bodies(text))
    return "\n".join(parts)


def _decoded_bodies(text: str) -> list[str]:
    """Kombu keeps message bodies base64-encoded inside JSON: decode them for the search."""
    try:
        message = json.loads(text)
    except ValueError:
        return []
    candidates = (
        [m for m in message if isinstance(m, dict)] if isinstance(message, list) else [message]
    )
    found = []
    for candidate in candidates:
        if isinstance(candidate, dict) and isinstance(candidate.get("body"), str):
            with contextlib.suppress(ValueError):
                found.append(base64.b64decode(candidate["body"]).decode(errors="replace"))
    return found


def database_dump(database_url: str) -> str:
    engine = make_engine(database_url)
    metadata = MetaData()
    metadata.reflect(engine)
    lines = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                lines.append(f"{table.name}: {json.dumps(list(row), default=str)}")
    engine.dispose()
    assert any(line.startswith("events:") for line in lines)
    return "\n".join(lines)


def pages_html(base: str) -> str:
    """The admin signs in and opens every page of every connection."""
    seen: list[str] = []
    with httpx.Client(base_url=base, timeout=15) as admin:
        login = admin.get("/connections/login").text
        seen.append(login)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
        form = {"password": ADMIN_PASSWORD, **({"csrf_token": csrf.group(1)} if csrf else {})}
        signed_in = admin.post("/connections/login", data=form, follow_redirects=True)
        assert signed_in.status_code == 200, signed_in.text
        listing = signed_in.text
        seen.append(listing)
        links = sorted(set(re.findall(r'href="/connections/([a-z][a-z0-9_]*)"', listing)))
        assert {"sdp", "echo_key", "echo_basic"} <= set(links), links
        for link in links:
            for path in (f"/connections/{link}", f"/connections/{link}/connect",
                         f"/connections/{link}/edit", f"/connections/{link}/delete"):  # fmt: skip
                page = admin.get(path)
                assert page.status_code < 500, (path, page.status_code)
                seen.append(page.text)
    return "\n".join(seen)


@pytest.fixture
def fake_sdp() -> Iterator[tuple[FakeSdp, str]]:
    fake = FakeSdp(client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    with serving(fake.app()) as url:
        yield fake, url


def test_a_full_run_leaves_no_secret_in_logs_database_redis_or_pages(
    tmp_path: Path, database_url: str, redis_url: str, fake_sdp: tuple[FakeSdp, str]
) -> None:
    fake, fake_url = fake_sdp
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yml").write_text(RULES)
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    fake.requests["501"] = {"id": "501", "subject": "Printer on fire", "status": {"name": "Open"}}
    with serving(echo_app()) as echo_url:
        connections = tmp_path / "connections.yml"
        connections.write_text(
            SERVICES.format(echo=echo_url) + sdp_connections_yaml(fake_url, fake) + CONNECTIONS
        )
        env = {
            "DESKWIRE_BROKER_URL": redis_url,
            "DESKWIRE_DATABASE_URL": database_url,
            "DESKWIRE_RULES_DIR": str(rules_dir),
            "DESKWIRE_CONNECTIONS_FILE": str(connections),
            "DESKWIRE_SECRET_KEY": SECRET_KEY,
            "DESKWIRE_WEBHOOK_TOKENS": WEBHOOK_TOKEN,
            "DESKWIRE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "DESKWIRE_VAR_DIR": str(var_dir),
            "DESKWIRE_SWEEP_INTERVAL": "1",
            "DESKWIRE_RETRY_BACKOFF_MAX": "1",
            "DESKWIRE_LOG_LEVEL": "DEBUG",
            "SDP_CLIENT_ID": fake.client_id,
            "SDP_CLIENT_SECRET": CLIENT_SECRET,
            "SDP_REFRESH_TOKEN": REFRESH_TOKEN,
            "ECHO_API_KEY": API_KEY,
            "ECHO_PASSWORD": BASIC_PASSWORD,
        }
        worker_log = tmp_path / "worker.log"
        web_log = tmp_path / "web.log"
        with worker_log.open("ab") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "deskwire", "worker", "--concurrency", "1"],
                env={**os.environ, **env},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            with web_process(env, web_log) as web:
                body = {"event": "request.created", "event_id": "scan-1",
                        "request": {"id": "501", "subject": "Printer on fire"}}  # fmt: skip
                sent = httpx.post(
                    web + "/webhooks/sdp", json=body, headers={"X-Deskwire-Token": WEBHOOK_TOKEN}
                )
                assert sent.status_code == 202, sent.text
                # The query-string form of the token, as SDP webhook actions can send it.
                body = {**body, "event_id": "scan-2", "request": {"id": "501", "subject": "Again"}}
                sent = httpx.post(web + f"/webhooks/sdp?token={WEBHOOK_TOKEN}", json=body)
                assert sent.status_code == 202, sent.text
                wrong = httpx.post(web + "/webhooks/sdp?token=wrong-token-value", json=body)
                assert wrong.status_code == 401
                _wait_until_finished(database_url, {"scan-1", "scan-2"}, worker)
                pages = pages_html(web)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()

    # The run really went through every credential and every echo.
    assert fake.issued, "no access token was issued"
    assert len(fake.notes) == 2
    assert "***" in fake.notes[0]["description"]  # the echo came back masked
    history = database_dump(database_url)
    assert "HTTP 400" in history  # the refused step's error is recorded (masked)
    logs = worker_log.read_text(errors="replace") + web_log.read_text(errors="replace")
    assert "echo said" in logs

    secrets = {
        "webhook token": WEBHOOK_TOKEN,
        "secret key": SECRET_KEY,
        "admin password": ADMIN_PASSWORD,
        "client secret": CLIENT_SECRET,
        "refresh token": REFRESH_TOKEN,
        "API key": API_KEY,
        "Basic password": BASIC_PASSWORD,
        "Basic credentials": base64.b64encode(f"ops:{BASIC_PASSWORD}".encode()).decode(),
        **{f"access token {n}": token for n, token in enumerate(sorted(fake.issued))},
    }
    places = {
        "logs": logs,
        "database": history,
        "redis": redis_dump(redis.Redis.from_url(redis_url)),
        "pages": pages,
    }
    hits = [
        f"{name} in {place}"
        for name, secret in secrets.items()
        for place, text in places.items()
        if secret in text
    ]
    assert hits == []


def _wait_until_finished(database_url: str, event_ids: set[str], worker: Any) -> None:
    engine = make_engine(database_url)
    metadata = MetaData()
    rows: list[Any] = []

    def finished() -> bool:
        nonlocal rows
        metadata.reflect(engine)
        events = metadata.tables["events"]
        with engine.connect() as connection:
            rows = list(connection.execute(select(events.c.event_id, events.c.status)).all())
        done = {event_id for event_id, status in rows if status in ("done", "failed")}
        if event_ids <= done:
            return True
        assert worker.poll() is None, "the worker exited"
        return False

    try:
        wait_until(finished, 90, lambda: f"events finishing: {rows}", interval=0.3)
    finally:
        engine.dispose()
