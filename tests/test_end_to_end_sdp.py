"""SDP actions through real parts: webhook → Redis → worker process → fake SDP Cloud/on-prem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.fakes.sdp import FakeSdp
from tests.integration import deployment

pytestmark = pytest.mark.integration

EVERY_ACTION = """\
rules:
  - id: triage
    on: [request.created]
    actions:
      - id: full
        uses: sdp.get_request
        with: {request_id: "{{ request.id }}"}
      - id: assign
        uses: sdp.assign_request
        with: {request_id: "{{ request.id }}", group: Network, technician: ann@example.com}
      - id: update
        uses: sdp.update_request
        with:
          request_id: "{{ request.id }}"
          fields: {priority: High, urgency: 2}
          custom_fields: {Asset Tag: "{{ steps.full.json.subject }}"}
      - id: task
        uses: sdp.add_task
        with: {request_id: "{{ request.id }}", title: "Check {{ steps.full.json.subject }}"}
      - id: worklog
        uses: sdp.add_worklog
        with:
          request_id: "{{ request.id }}"
          description: "task {{ steps.task.json.id }}"
          minutes: 5
          owner: "17"
      - id: others
        uses: sdp.search_requests
        with: {criteria: {subject: "{{ request.subject }}"}, limit: 10}
      - id: link
        uses: sdp.link_requests
        if: "{{ steps.others.json.count > 1 }}"
        with:
          request_id: "{{ request.id }}"
          linked_ids: >-
            {{ steps.others.json.requests | map(attribute='id')
               | reject('equalto', request.id) | list }}
      - id: resolve
        uses: sdp.add_resolution
        with: {request_id: "{{ request.id }}", content: Restarted}
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Resolution: {{ steps.resolve.json.content }}"
          mark_first_response: true
          show_to_requester: "{{ steps.full.json.status.name == 'Closed' }}"
          notify_technician: "{{ 'false' }}"
      - id: notes
        uses: sdp.list_notes
        with: {request_id: "{{ request.id }}"}
      - id: close
        uses: sdp.close_request
        with:
          request_id: "{{ request.id }}"
          closure_code: Success
          comments: "{{ steps.notes.json.count }} note(s)"
      - id: pickup
        uses: sdp.pickup_request
        with: {request_id: "{{ steps.others.json.requests[1].id }}"}
"""


def _onprem_connections(key_header: str) -> object:
    def build(fake_url: str, _fake: FakeSdp) -> str:
        # The recipe of docs/sdp.md ("On-premises"), pointed at the fake.
        header = f"    key_header: {key_header}\n" if key_header != "authtoken" else ""
        return (
            textwrap.dedent(f"""\
            connections:
              sdp:
                name: ServiceDesk Plus (on-prem)
                service: sdp_onprem
                base_url: {fake_url}
                values: {{authtoken: "${{SDP_TECHNICIAN_KEY}}"}}
            """)
            + header
        )

    return build


def _check_every_action(fake: FakeSdp, d: object, event_id: str) -> None:
    event = d.wait_for(event_id)  # type: ignore[attr-defined]
    assert event.status == "done", event.error
    steps = {s.step_id: s for s in d.step_runs(event.id)}  # type: ignore[attr-defined]
    assert {s.status for s in steps.values()} == {"succeeded"}, {
        k: (s.status, s.error) for k, s in steps.items()
    }
    request = fake.requests["501"]
    assert request["group"] == {"name": "Network"}
    assert request["technician"] == {"email_id": "ann@example.com"}
    assert request["priority"] == {"name": "High"}
    assert request["urgency"] == {"id": "2"}
    assert request["udf_fields"] == {"udf_char1": "VPN down"}
    assert request["status"] == {"name": "Closed"}
    assert request["closure_info"]["closure_comments"] == "1 note(s)"
    assert request["resolution"]["content"] == "Restarted"
    assert fake.tasks[0]["title"] == "Check VPN down"
    assert fake.worklogs[0]["description"] == "task 1"
    assert fake.worklogs[0]["owner"] == {"id": "17"}
    assert [link["linked_request"] for link in fake.links] == [{"id": "502"}]
    [note] = fake.notes
    assert note["description"] == "Resolution: Restarted"
    assert note["mark_first_response"] is True
    assert note["show_to_requester"] is False
    assert note["notify_technician"] is False  # the text "false" means false
    assert fake.requests["502"]["technician"]["name"] == "API technician"  # picked up


def _seed(fake: FakeSdp) -> None:
    fake.requests = {
        "501": {"id": "501", "subject": "VPN down", "status": {"name": "Open"}},
        "502": {"id": "502", "subject": "VPN down", "status": {"name": "Open"}},
    }


def test_every_action_on_sdp_cloud(tmp_path: Path, database_url: str, redis_url: str) -> None:
    fake = FakeSdp()
    _seed(fake)
    with deployment(tmp_path, database_url, redis_url, rules=EVERY_ACTION, fake=fake) as d:
        body = {"event": "request.created", "event_id": "c-all", "request": fake.requests["501"]}
        assert d.post(body).status_code == 202
        _check_every_action(fake, d, "c-all")
        note_calls = [c["keys"] for c in fake.calls if c["path"].endswith("/notes")]
        assert note_calls[0] == ["request_note"]


@pytest.mark.parametrize("key_header", ["authtoken", "TECHNICIAN_KEY"])
def test_every_action_on_premises(
    tmp_path: Path, database_url: str, redis_url: str, key_header: str
) -> None:
    fake = FakeSdp(onprem=True, key_header=key_header)
    _seed(fake)
    with deployment(
        tmp_path, database_url, redis_url, rules=EVERY_ACTION, fake=fake,
        connections=_onprem_connections(key_header),
    ) as d:  # fmt: skip
        body = {"event": "request.created", "event_id": "o-all", "request": fake.requests["501"]}
        assert d.post(body).status_code == 202
        _check_every_action(fake, d, "o-all")
        # One note call, with the on-premises key: no failing round trip first.
        assert [c["keys"] for c in fake.calls if c["path"].endswith("/notes") and
                c["method"] == "POST"] == [["note"]]  # fmt: skip
        assert {c["auth"] for c in fake.calls} == {fake.technician_key}
        assert fake.token_requests == 0


HTTP_THROUGH_SDP = """\
rules:
  - id: raw
    on: [request.created]
    actions:
      - id: read
        uses: http.get
        with: {connection: sdp, url: "requests/{{ request.id }}"}
      - id: after
        uses: log
        with: {message: "read {{ steps.read.json.request.subject }}"}
"""


def test_http_step_through_sdp_treats_a_failed_200_as_a_failure(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    fake = FakeSdp()
    _seed(fake)
    with deployment(tmp_path, database_url, redis_url, rules=HTTP_THROUGH_SDP, fake=fake) as d:
        fake.fail_next = [(200, 4001, "id")]
        d.post({"event": "request.created", "event_id": "h-1", "request": fake.requests["501"]})
        event = d.wait_for("h-1")
        assert event.status == "failed"
        assert "4001: injected failure (field id)" in (event.error or "")
        steps = {s.step_id: s for s in d.step_runs(event.id)}
        assert steps["read"].status == "failed"
        assert "after" not in steps
        # The same step passes when SDP says success.
        d.post({"event": "request.created", "event_id": "h-2", "request": fake.requests["502"]})
        assert d.wait_for("h-2").status == "done"
