"""The whole path through real parts: webhook over HTTP → Redis → worker process → fake SDP."""

from __future__ import annotations

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
