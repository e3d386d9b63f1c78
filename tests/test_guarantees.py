"""Processing guarantees through real parts: retries, dead letters and replay, a broker
that was down at ingest, a worker killed mid-task, order per request, no loops, ids-only
payloads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.integration import ROOT, deployment

pytestmark = pytest.mark.integration

TWO_STEP_RULE = """\
rules:
  - id: triage
    on: [request.created]
    actions:
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Triaged {{ request.subject }}"
      - id: priority
        uses: sdp.update_request
        with:
          request_id: "{{ request.id }}"
          fields: {priority: {name: High}}
"""


def created(event_id: str, request_id: str = "900", subject: str = "Disk full") -> dict:
    return {
        "event": "request.created",
        "event_id": event_id,
        "request": {"id": request_id, "subject": subject},
    }


def test_transient_sdp_failure_is_retried_without_repeating_done_steps(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=TWO_STEP_RULE) as d:
        # The note passes; the update meets an SDP internal error (4004, HTTP 500) once.
        d.fake.fail_next = [None, (500, 4004)]
        d.post(created("retry-1"))
        event = d.wait_for("retry-1")
        assert event.status == "done", event.error
        assert event.attempts == 2
        assert len(d.fake.notes) == 1  # the note step is not repeated by the retry
        assert len(d.fake.updates) == 1
        steps = {s.step_id: s for s in d.step_runs(event.id)}
        assert steps["priority"].attempts == 2


def test_rate_limit_is_retried(tmp_path: Path, database_url: str, redis_url: str) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=TWO_STEP_RULE) as d:
        d.fake.fail_next = [(429, 4015)]
        d.post(created("rate-1"))
        assert d.wait_for("rate-1").status == "done"
        assert len(d.fake.notes) == 1


def test_permanent_failure_is_a_dead_letter_and_replay_finishes_it(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=TWO_STEP_RULE) as d:
        d.fake.fail_next = [None, (400, 4012)]
        d.post(created("dead-1"))
        event = d.wait_for("dead-1")
        assert event.status == "failed"
        assert "rule triage" in (event.error or "")
        assert "4012" in (event.error or "")
        listing = subprocess.run(
            [sys.executable, "-m", "deskwire", "events", "list", "--status", "failed"],
            env=d.env, cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "request.created" in listing.stdout
        replay = subprocess.run(
            [sys.executable, "-m", "deskwire", "events", "replay", str(event.id)],
            env=d.env, cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "queued again" in replay.stdout
        event = d.wait_for("dead-1")
        assert event.status == "done", event.error
        assert event.attempts == 1
        assert len(d.fake.notes) == 1  # the note succeeded the first time: not written twice
        assert len(d.fake.updates) == 1


def test_event_accepted_while_the_broker_was_down_is_processed_later(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(
        tmp_path,
        database_url,
        redis_url,
        rules=TWO_STEP_RULE,
        web_broker_url="redis://127.0.0.1:1/0",
    ) as d:
        assert d.post(created("down-1")).status_code == 202
        event = d.wait_for("down-1", timeout=60)  # the worker's sweeper dispatches it
        assert event.status == "done", event.error
        assert len(d.fake.notes) == 1


SLOW_RULE = """\
rules:
  - id: slow
    on: [request.created]
    actions:
      - id: first
        uses: sdp.add_note
        with: {request_id: "{{ request.id }}", description: "before the slow call"}
      - id: call
        uses: http.get
        with: {url: "{{ payload.slow_url }}"}
      - id: last
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "after {{ steps.call.json.calls }} call(s)"
"""


def test_worker_killed_mid_task_loses_nothing_and_repeats_no_done_step(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=SLOW_RULE) as d:
        d.fake.slow_seconds = 30
        body = created("crash-1") | {"slow_url": d.fake_url + "/slow"}
        d.post(body)
        assert d.fake.slow_started.wait(30), d.worker_log()
        assert d.worker is not None
        children = psutil.Process(d.worker.pid).children(recursive=True)
        assert children
        for child in children:
            os.kill(child.pid, signal.SIGKILL)  # the pool child dies mid-step
        d.fake.slow_seconds = 0
        event = d.wait_for("crash-1", timeout=90)
        assert event.status == "done", event.error
        notes = [n["description"] for n in d.fake.notes]
        assert notes == ["before the slow call", "after 2 call(s)"]


ORDER_RULE = """\
rules:
  - id: record
    on: ["request.*"]
    actions:
      - id: wait
        uses: http.get
        if: "{{ event.type == 'request.created' }}"
        with: {url: "{{ payload.slow_url }}"}
      - uses: sdp.add_note
        with: {request_id: "{{ request.id }}", description: "{{ event.type }}"}
"""


def test_events_about_one_request_run_in_arrival_order(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=ORDER_RULE, start_worker=False) as d:
        d.start_worker(concurrency=2)
        d.fake.slow_seconds = 5  # long enough that request 78 finishes first even under load
        slow = d.fake_url + "/slow"
        d.post(
            {
                "event": "request.created",
                "event_id": "o-1",
                "request": {"id": "77", "subject": "s"},
                "slow_url": slow,
            }
        )
        d.post(
            {
                "event": "request.updated",
                "event_id": "o-2",
                "request": {"id": "77", "subject": "changed by a person"},
                "slow_url": slow,
            }
        )
        d.post(
            {
                "event": "request.updated",
                "event_id": "o-3",
                "request": {"id": "78", "subject": "s"},
                "slow_url": slow,
            }
        )
        for event_id in ("o-1", "o-2", "o-3"):
            assert d.wait_for(event_id).status == "done"
        by_request = [(n["request_id"], n["description"]) for n in d.fake.notes]
        mine = [desc for rid, desc in by_request if rid == "77"]
        assert mine == ["request.created", "request.updated"]
        # The other request was not held up behind request 77.
        assert by_request.index(("78", "request.updated")) < by_request.index(
            ("77", "request.created")
        )


LOOP_RULE = """\
rules:
  - id: echo
    on: ["request.*"]
    actions:
      - uses: sdp.add_note
        with: {request_id: "{{ request.id }}", description: "noted {{ event.id }}"}
"""


def test_own_writes_do_not_trigger_rules(tmp_path: Path, database_url: str, redis_url: str) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=LOOP_RULE) as d:
        request = {"id": "31", "subject": "Loop?", "status": {"name": "Open"}}
        d.post({"event": "request.created", "event_id": "l-1", "request": request})
        assert d.wait_for("l-1").status == "done"
        # SDP echoes deskwire's note as a webhook: nothing changed but the note.
        d.post({"event": "request.updated", "event_id": "l-2", "request": request})
        echo = d.wait_for("l-2")
        assert echo.status == "done"
        assert echo.caused_by_deskwire is True
        assert len(d.fake.notes) == 1
        assert "own write" in (d.rule_runs(echo.id)["echo"].detail or "")
        # A person changing the status is not deskwire's write: the rule fires.
        changed = request | {"status": {"name": "In Progress"}}
        d.post({"event": "request.updated", "event_id": "l-3", "request": changed})
        assert d.wait_for("l-3").caused_by_deskwire is False
        assert len(d.fake.notes) == 2


IDS_ONLY_RULE = """\
rules:
  - id: vip
    on: [request.created]
    when:
      all:
        - request.requester.is_vip_user: true
    actions:
      - uses: sdp.add_note
        with: {request_id: "{{ request.id }}", description: "VIP: {{ request.subject }}"}
"""


def test_payload_with_only_ids_is_completed_from_sdp(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=IDS_ONLY_RULE) as d:
        d.fake.requests["55"] = {
            "id": "55",
            "subject": "CEO laptop",
            "requester": {"name": "Boss", "is_vip_user": True},
        }
        d.post({"event": "request.created", "event_id": "ids-1", "request_id": "55"})
        event = d.wait_for("ids-1")
        assert event.status == "done", event.error
        assert [n["description"] for n in d.fake.notes] == ["VIP: CEO laptop"]


RESOLVE_RULE = """\
rules:
  - id: on-resolve
    on: ["request.*"]
    when:
      request.status.name: {changed_to: Resolved}
    actions:
      - id: note
        uses: sdp.add_note
        with: {request_id: "{{ request.id }}", description: "resolved"}
      - id: close_code
        uses: sdp.update_request
        with:
          request_id: "{{ request.id }}"
          fields: {udf_fields: {udf_char1: done}}
"""


def test_replay_resumes_a_failed_rule_against_what_the_first_run_saw(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=RESOLVE_RULE) as d:
        request = {"id": "41", "subject": "S", "status": {"name": "Open"}}
        d.post({"event": "request.created", "event_id": "rs-1", "request": request})
        assert d.wait_for("rs-1").status == "done"
        d.fake.fail_next = [None, (400, 4012)]  # the note passes, the update is refused
        resolved = request | {"status": {"name": "Resolved"}}
        d.post({"event": "request.updated", "event_id": "rs-2", "request": resolved})
        failed = d.wait_for("rs-2")
        assert failed.status == "failed"
        # Deskwire has seen "Resolved" by now; the replay must still run the failed step.
        subprocess.run(
            [sys.executable, "-m", "deskwire", "events", "replay", str(failed.id)],
            env=d.env, cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        replayed = d.wait_for("rs-2")
        assert replayed.status == "done", replayed.error
        assert replayed.attempts == 1  # a replay gets the full number of tries again
        assert len(d.fake.notes) == 1
        assert len(d.fake.updates) == 1


def test_own_write_is_recognised_even_when_the_first_try_failed_early(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=LOOP_RULE) as d:
        request = {"id": "32", "subject": "Loop?", "status": {"name": "Open"}}
        d.post({"event": "request.created", "event_id": "le-1", "request": request})
        assert d.wait_for("le-1").status == "done"
        d.fake.requests["32"] = dict(request)
        d.fake.fail_next = [(500, 4004)]  # reading the ids-only echo fails once
        d.post({"event": "request.updated", "event_id": "le-2", "request_id": "32"})
        echo = d.wait_for("le-2")
        assert echo.status == "done", echo.error
        assert echo.attempts == 2
        assert echo.caused_by_deskwire is True
        assert len(d.fake.notes) == 1


def test_echo_carrying_fewer_fields_than_deskwire_knows_is_still_its_own(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=LOOP_RULE) as d:
        full = {
            "id": "33",
            "subject": "Loop?",
            "status": {"name": "Open"},
            "priority": {"name": "Low"},
            "site": {"name": "HQ"},
        }
        d.post({"event": "request.created", "event_id": "lp-1", "request": full})
        assert d.wait_for("lp-1").status == "done"
        partial = {"id": "33", "status": {"name": "Open"}}
        d.post({"event": "request.updated", "event_id": "lp-2", "request": partial})
        assert d.wait_for("lp-2").caused_by_deskwire is True
        assert len(d.fake.notes) == 1
