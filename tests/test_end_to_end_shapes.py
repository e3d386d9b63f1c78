"""Every webhook shape through the real web app and a real worker process to a note in SDP.

One deployment (web on loopback, a ``deskwire worker`` process, Redis, the fake SDP) per
database serves all the shapes; each test sends one shape and waits for the note the rule
writes, which names the request id and the subject the rule saw as ``request.subject``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text

from deskwire.embedded import EmbeddedRedis
from tests.conftest import PG_URL, _normalise_pg, pg_schema_url, release_pg_schema
from tests.integration import TOKEN, Deployment, deployment
from tests.test_webhook_shapes import SHAPES
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

NOTE_EVERY_REQUEST_EVENT = """\
rules:
  - id: note-request-events
    on: ["request.*"]
    on_own_writes: true  # every shape is about request 41, which the first note changed
    actions:
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "{{ event.id }} saw {{ request.subject | default(request.SUBJECT) }}"
  - id: log-changes
    on: ["change.*"]
    actions:
      - id: log
        uses: log
        with:
          message: "change {{ payload.id }} {{ payload.title }}"
"""


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param(
            "postgresql",
            id="postgresql",
            marks=pytest.mark.skipif(not PG_URL, reason="DESKWIRE_TEST_DATABASE_URL is not set"),
        ),
    ],
)
def shapes_deployment(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: EmbeddedRedis,
) -> Iterator[Deployment]:
    tmp_path = tmp_path_factory.mktemp("shapes")
    redis.Redis.from_url(redis_server.url).flushdb()
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'deskwire.db'}"
        schema = None
    else:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        admin = create_engine(_normalise_pg(PG_URL))
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        database_url = pg_schema_url(_normalise_pg(PG_URL), schema)
    try:
        with deployment(
            tmp_path, database_url, redis_server.url, rules=NOTE_EVERY_REQUEST_EVENT
        ) as d:
            yield d
    finally:
        if schema is not None:
            engine = create_engine(_normalise_pg(PG_URL))
            release_pg_schema(engine, schema)
            engine.dispose()


def wait_for_note(d: Deployment, marker: str, timeout: float = 60) -> dict[str, str]:
    def note() -> dict[str, str] | None:
        found = [note for note in d.fake.notes if note["description"].startswith(marker + " ")]
        if found:
            return found[0]
        assert d.worker is not None
        assert d.worker.poll() is None, "the worker exited"
        return None

    return wait_until(note, timeout, lambda: f"a note for {marker}; notes: {d.fake.notes}")


@pytest.mark.parametrize(
    ("content_type", "body", "request_id", "view"),
    [pytest.param(*shape[1:], id=shape[0]) for shape in SHAPES],
)
def test_every_shape_reaches_the_rules_as_request(
    shapes_deployment: Deployment,
    content_type: str | None,
    body: bytes,
    request_id: str,
    view: dict[str, object],
) -> None:
    d = shapes_deployment
    # Shapes that carry only the id are completed by the worker from SDP.
    d.fake.requests[request_id] = {"id": request_id, "subject": "VPN down"}
    marker = f"shape-{uuid.uuid4().hex[:12]}"
    headers = {"X-Deskwire-Token": TOKEN, "X-Deskwire-Event-Id": marker}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if b'"event_id"' in body or b"event_id=" in body:
        body = body.replace(b"d-1", marker.encode())
    response = httpx.post(
        d.web_url + "/webhooks/sdp/main/request.updated", content=body, headers=headers, timeout=10
    )
    assert response.status_code == 202, response.text
    assert response.json()["event_id"] == marker
    note = wait_for_note(d, marker)
    assert note["request_id"] == request_id
    assert note["description"] == f"{marker} saw VPN down"
    event = d.wait_for(marker)
    assert event.status == "done", event.error


def test_a_change_event_without_a_request_reaches_its_rules_untouched(
    shapes_deployment: Deployment,
) -> None:
    d = shapes_deployment
    marker = f"change-{uuid.uuid4().hex[:12]}"
    body = json.dumps({"id": "3001", "title": "Firewall", "event_id": marker}).encode()
    response = httpx.post(
        d.web_url + "/webhooks/sdp/main/change.created",
        content=body,
        headers={"X-Deskwire-Token": TOKEN},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    event = d.wait_for(marker)
    assert event.status == "done", event.error
    assert event.request_id is None
    assert d.rule_runs(event.id)["log-changes"].outcome == "done"
