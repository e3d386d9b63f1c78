"""The whole path through real parts: webhook over HTTP → Redis → worker process → fake SDP."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

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
        time.sleep(1.5)  # the worker checks the folder every 0.5 s in this deployment
        d.post({"event": "request.created", "event_id": "r-2", "request": high | {"id": "601"}})
        second = d.wait_for("r-2")
        assert second.status == "done"
        assert second.ruleset_version != first.ruleset_version
        assert d.fake.notes[-1]["description"].startswith("Edited:")
        # A broken edit is reported and the last good rules keep running.
        d.write_rules(
            "rules:\n  - id: broken\n    on: request.created\n    when: {request.x: {nope: 1}}\n"
        )
        time.sleep(1.5)
        d.post({"event": "request.created", "event_id": "r-3", "request": high | {"id": "602"}})
        third = d.wait_for("r-3")
        assert third.status == "done"
        assert third.ruleset_version == second.ruleset_version
        assert d.fake.notes[-1]["description"].startswith("Edited:")
        assert "unknown operator 'nope'" in d.worker_log()
