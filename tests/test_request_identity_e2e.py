"""No genuine change is dropped: duplicates by request state, through web, Redis and a worker.

A webhook without an event id repeats an earlier one only when it has the same body and
describes the same state of the same request (``last_updated_time``, from the body or read
from the fake SDP). Every decision is in the run history with its reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.sdp import FakeSdp
from tests.integration import ROOT, TOKEN, Deployment, deployment

pytestmark = pytest.mark.integration

FINISHED = ("done", "failed", "duplicate")

NOTE_RULE = """\
rules:
  - id: note-it
    on: [request.updated]
    actions:
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Seen: {{ request.subject }}"
"""

LOG_RULE = """\
rules:
  - id: log-it
    on: [request.updated]
    actions:
      - id: say
        uses: log
        with:
          message: "request {{ request.id }}: {{ payload.note | default('-') }}"
"""


def send(d: Deployment, body: dict[str, Any]) -> str:
    """Post a webhook without an event id; return the id deskwire gave it."""
    response = d.post(body)
    assert response.status_code == 202, response.text  # the worker decides, never ingest
    assert response.json()["status"] == "queued"
    return str(response.json()["event_id"])


def cli(d: Deployment, *args: str) -> str:
    """A ``deskwire`` command as an operator runs it against this deployment."""
    result = subprocess.run(
        [sys.executable, "-m", "deskwire", *args],
        env={**os.environ, **d.env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_an_id_only_body_runs_again_after_the_request_changed_and_not_before(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE) as d:
        d.fake.edit_request("4001", subject="VPN down", status={"name": "Open"})
        body = {"event": "request.updated", "request": {"id": "4001"}}

        first = d.wait_for(send(d, body), FINISHED)
        assert first.status == "done", first.error
        assert first.identity is not None
        assert first.identity.startswith("new state: request 4001 at last_updated_time")
        assert "(from SDP)" in first.identity

        # SDP fires the same webhook again for the same state: it runs once.
        again = d.wait_for(send(d, body), FINISHED)
        assert again.status == "duplicate"
        assert again.identity is not None
        assert again.identity.startswith(f"duplicate of event {first.id} ({first.event_id})")
        assert d.rule_runs(again.id) == {}

        # A person edits the request; SDP sends the byte-identical body: a new change.
        d.fake.edit_request("4001", subject="VPN down again")
        changed = d.wait_for(send(d, body), FINISHED)
        assert changed.status == "done", changed.error
        assert [n["description"] for n in d.fake.notes] == [
            "Seen: VPN down",
            "Seen: VPN down again",
        ]
        # One read of the request per event, shared by the duplicate decision and the rules.
        assert d.fake.reads == ["4001", "4001", "4001"]

        shown = cli(d, "events", "show", str(again.id))
        assert "status duplicate" in shown
        assert f"identity: duplicate of event {first.id}" in shown
        assert "status done" in cli(d, "events", "show", str(changed.id))
        listed = cli(d, "events", "list", "--status", "duplicate")
        rows = [line for line in listed.splitlines()[1:] if not line.startswith(" ")]
        assert [row.split()[0] for row in rows] == [str(again.id)]
        assert f"duplicate of event {first.id}" in " ".join(listed.split())  # may wrap


def fire_at_once(d: Deployment, body: dict[str, Any], *, copies: int) -> list[Any]:
    """Post ``copies`` identical webhooks at the same moment; wait until each finished."""
    ids: list[str] = []
    start = threading.Barrier(copies)

    def fire() -> None:
        start.wait(timeout=30)
        ids.append(send(d, body))

    threads = [threading.Thread(target=fire) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(ids) == copies
    return [d.wait_for(event_id, FINISHED) for event_id in ids]


def test_concurrent_copies_of_one_state_run_exactly_once(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE, start_worker=False) as d:
        d.start_worker(concurrency=2)
        d.fake.edit_request("4002", subject="Printer jam", display_id="88")
        # Copies with the request id are queued one after another (per-request order);
        # copies naming only the display id are not, so two worker processes race.
        for body, seen in [
            ({"event": "request.updated", "request": {"id": "4002"}}, "Seen: Printer jam"),
            ({"event": "request.updated", "request": {"display_id": "88"}}, "Seen: Toner"),
        ]:
            if seen == "Seen: Toner":
                d.fake.edit_request("4002", subject="Toner")
            events = fire_at_once(d, body, copies=4)
            done = [e for e in events if e.status == "done"]
            assert len(done) == 1, [(e.status, e.identity, e.error) for e in events]
            duplicates = [e for e in events if e.status == "duplicate"]
            assert len(duplicates) == 3
            for event in duplicates:
                assert event.identity is not None
                assert event.identity.startswith(f"duplicate of event {done[0].id} ")
            assert d.fake.notes[-1]["description"] == seen
        assert [n["description"] for n in d.fake.notes] == ["Seen: Printer jam", "Seen: Toner"]


def test_two_different_bodies_for_one_state_both_run(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=LOG_RULE) as d:
        d.fake.edit_request("4003", subject="Access request")
        ann = {"event": "request.updated", "request": {"id": "4003"}, "note": "from Ann"}
        bob = {"event": "request.updated", "request": {"id": "4003"}, "note": "from Bob"}
        first = d.wait_for(send(d, ann), FINISHED)
        second = d.wait_for(send(d, bob), FINISHED)
        assert (first.status, second.status) == ("done", "done")
        assert first.identity != second.identity
        assert d.rule_runs(second.id)["log-it"].outcome == "done"
        log = d.worker_log()
        assert "request 4003: from Ann" in log
        assert "request 4003: from Bob" in log


def _no_sdp(_url: str, _fake: FakeSdp) -> str:
    return "connections: {}\n"


def test_last_updated_time_from_the_body_and_no_sdp_connection(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=LOG_RULE, connections=_no_sdp) as d:
        nested = {
            "event": "request.updated",
            "request": {
                "id": "4004",
                "subject": "Disk full",
                "last_updated_time": {"value": "1700000000001", "display_value": "Nov 14"},
            },
        }
        first = d.wait_for(send(d, nested), FINISHED)
        assert first.status == "done", first.error
        assert first.identity is not None
        assert "last_updated_time 1700000000001 (from the body)" in first.identity
        assert d.wait_for(send(d, nested), FINISHED).status == "duplicate"

        # Flat epoch milliseconds, a later state: new.
        flat = {"event": "request.updated", "request_id": "4004", "subject": "Disk full",
                "last_updated_time": 1700000000002}  # fmt: skip
        assert d.wait_for(send(d, flat), FINISHED).status == "done"

        # No last_updated_time and no SDP connection to read it: it runs, and says why.
        bare = {"event": "request.updated", "request": {"id": "4004", "subject": "Disk full"}}
        runs = [d.wait_for(send(d, bare), FINISHED) for _ in range(2)]
        for event in runs:
            assert event.status == "done", event.error
            assert event.identity is not None
            assert event.identity.startswith("no duplicate check, the event runs:")
            assert "no connection 'sdp'" in event.identity
        assert d.fake.reads == []


def test_an_explicit_event_id_is_still_deduplicated_at_ingest(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=LOG_RULE) as d:
        d.fake.edit_request("4005", subject="Laptop")
        body = {"event": "request.updated", "request": {"id": "4005"}}
        headers = {"X-Deskwire-Token": TOKEN, "X-Deskwire-Event-Id": "sdp-77"}
        url = d.web_url + "/webhooks/sdp"
        first = httpx.post(url, json=body, headers=headers, timeout=10)
        assert first.status_code == 202
        again = httpx.post(url, json=body, headers=headers, timeout=10)
        assert again.status_code == 200
        assert again.json() == {"event_id": "sdp-77", "status": "duplicate"}
        event = d.wait_for("sdp-77")
        assert event.status == "done"
        assert event.identity is not None
        assert event.identity.startswith("event id from the sender")


ESCALATE_RULE = """\
rules:
  - id: escalate
    on: [request.updated]
    when:
      request.subject: {icontains: outage}
    actions:
      - id: raise
        uses: sdp.update_request
        with:
          request_id: "{{ request.id }}"
          fields: {priority: {name: High}}
"""


def test_a_double_fire_after_deskwire_wrote_back_acts_once(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    # The write moves last_updated_time, so the second copy reads a newer state: it is
    # recorded as a new state, and loop prevention sees that the change was deskwire's own.
    with deployment(tmp_path, database_url, redis_url, rules=ESCALATE_RULE) as d:
        d.fake.edit_request("4007", subject="Mail outage", priority={"name": "Low"})
        body = {"event": "request.updated", "request": {"id": "4007"}}
        first = d.wait_for(send(d, body), FINISHED)
        second = d.wait_for(send(d, body), FINISHED)
        assert (first.status, second.status) == ("done", "done")
        assert second.identity is not None
        assert second.identity.startswith("new state: request 4007")
        assert second.caused_by_deskwire is True
        assert d.rule_runs(second.id)["escalate"].outcome == "not_matched"
        assert len(d.fake.updates) == 1
