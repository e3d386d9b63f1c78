"""The whole path through real parts: webhook over HTTP → Redis → worker process → fake SDP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from tests.integration import deployment

pytestmark = pytest.mark.integration

NOTE_RULE = """\
rules:
  - id: acknowledge
    on: [request.created]
    when:
      all:
        - request.priority.name: High
    actions:
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Seen: {{ request.subject }} ({{ request.priority.name }})"
"""


def test_webhook_ends_as_a_note_in_sdp(tmp_path: Path, database_url: str, redis_url: str) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE) as d:
        body = {
            "event": "request.created",
            "event_id": "e2e-1",
            "request": {"id": "501", "subject": "Printer on fire", "priority": {"name": "High"}},
        }
        response = d.post(body)
        assert response.status_code == 202
        event = d.wait_for("e2e-1")
        assert event.status == "done", event.error
        assert event.ruleset_version
        [note] = d.fake.notes
        assert note["request_id"] == "501"
        assert note["description"] == "Seen: Printer on fire (High)"
        assert note["show_to_requester"] is False
        runs = d.rule_runs(event.id)
        assert runs["acknowledge"].outcome == "done"
        [step] = d.step_runs(event.id)
        assert (step.step_id, step.uses, step.status) == ("note", "sdp.add_note", "succeeded")
        assert d.fake.token_requests == 1


def test_webhooks_published_together_are_each_processed_once_by_the_worker(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE, start_worker=False) as d:
        broker = redis.Redis.from_url(redis_url)
        broker.config_resetstat()
        bodies = [
            {
                "event": "request.created",
                "event_id": f"group-{n}",
                "request": {"id": str(600 + n), "subject": f"s{n}", "priority": {"name": "High"}},
            }
            for n in range(24)
        ]
        with ThreadPoolExecutor(max_workers=12) as pool:
            assert [r.status_code for r in pool.map(d.post, bodies)] == [202] * 24
        assert broker.llen("deskwire") == 24
        # Commit groups of several webhooks, each group's tasks in one LPUSH.
        assert broker.info("commandstats")["cmdstat_lpush"]["calls"] < 24
        d.start_worker()
        for n in range(24):
            event = d.wait_for(f"group-{n}")
            assert (event.status, event.attempts) == ("done", 1), event.error
        assert sorted(note["request_id"] for note in d.fake.notes) == [
            str(600 + n) for n in range(24)
        ]


def test_non_matching_event_records_why(tmp_path: Path, database_url: str, redis_url: str) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE) as d:
        body = {
            "event": "request.created",
            "event_id": "e2e-low",
            "request": {"id": "502", "subject": "Mouse", "priority": {"name": "Low"}},
        }
        assert d.post(body).status_code == 202
        event = d.wait_for("e2e-low")
        assert event.status == "done"
        assert d.fake.notes == []
        run = d.rule_runs(event.id)["acknowledge"]
        assert run.matched is False
        assert "Low" in (run.detail or "")


def test_edited_rules_are_picked_up_and_a_bad_edit_keeps_the_last_good_set(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE) as d:
        high = {"id": "600", "subject": "A", "priority": {"name": "High"}}
        d.post({"event": "request.created", "event_id": "r-1", "request": high})
        first = d.wait_for("r-1")
        assert first.status == "done"
        # An edit takes effect without a restart.
        d.write_rules(NOTE_RULE.replace("Seen:", "Edited:"))
        # The worker looks at the folder when an event comes, at most every 0.5 s in this
        # deployment (the interval the test set): let that interval pass, three times over.
        time.sleep(1.5)
        d.post({"event": "request.created", "event_id": "r-2", "request": high | {"id": "601"}})
        second = d.wait_for("r-2")
        assert second.status == "done"
        assert second.ruleset_version != first.ruleset_version
        assert d.fake.notes[-1]["description"].startswith("Edited:")
        # A broken edit is reported and the last good rules keep running.
        d.write_rules(
            "rules:\n  - id: broken\n    on: request.created\n    when: {request.x: {nope: 1}}\n"
        )
        time.sleep(1.5)  # the reload interval again
        d.post({"event": "request.created", "event_id": "r-3", "request": high | {"id": "602"}})
        third = d.wait_for("r-3")
        assert third.status == "done"
        assert third.ruleset_version == second.ruleset_version
        assert d.fake.notes[-1]["description"].startswith("Edited:")
        assert "unknown operator 'nope'" in d.worker_log()


CHANGED_RULE = """\
rules:
  - id: resolved
    on: ["request.*"]
    when:
      request.status.name: {changed_to: Resolved}
    actions:
      - uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Resolved (was {{ previous.status.name }})"
"""


def test_changed_to_compares_with_the_last_state_deskwire_saw(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=CHANGED_RULE) as d:
        request = {"id": "700", "subject": "S", "status": {"name": "Open"}}
        d.post({"event": "request.created", "event_id": "c-1", "request": request})
        assert d.wait_for("c-1").status == "done"
        assert d.fake.notes == []  # never seen before: nothing "changed"
        resolved = request | {"status": {"name": "Resolved"}}
        d.post({"event": "request.updated", "event_id": "c-2", "request": resolved})
        assert d.wait_for("c-2").status == "done"
        assert [n["description"] for n in d.fake.notes] == ["Resolved (was Open)"]
        d.post(
            {"event": "request.updated", "event_id": "c-3", "request": resolved | {"subject": "T"}}
        )
        assert d.wait_for("c-3").status == "done"
        assert len(d.fake.notes) == 1  # still Resolved: not a change
