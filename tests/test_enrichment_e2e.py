"""Enrichment through real processes: every request shape reaches the rules as one `request`.

Cloud v3 ids only (read once, shared by every rule), a body lacking some fields the rules
read (completed by one read), a complete Deluge ``requestObj`` (no read), the older
upper-case on-premises JSON, a ``display_id`` resolved to the internal id, and an
on-premises server read with its ``authtoken``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.sdp import FakeSdp
from tests.integration import TOKEN, Deployment, deployment

pytestmark = pytest.mark.integration

# Two rules that read request fields: one read of the request must serve both.
RULES = """\
rules:
  - id: who
    on: ["request.*"]
    actions:
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "{{ request.subject }} for {{ request.requester.email_id }}"
  - id: urgent
    on: ["request.*"]
    when:
      request.priority.name: High
    actions:
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "urgent ({{ request.status.name }})"
"""

STORED = {
    "subject": "VPN down",
    "priority": {"name": "High", "id": "3"},
    "status": {"name": "Open"},
    "requester": {"name": "Jane Roe", "email_id": "jane@example.com"},
}


def send(d: Deployment, body: dict[str, Any], event_id: str) -> None:
    headers = {"X-Deskwire-Token": TOKEN, "X-Deskwire-Event-Id": event_id}
    response = httpx.post(d.web_url + "/webhooks/sdp", json=body, headers=headers, timeout=10)
    assert response.status_code == 202, response.text


def notes_of(d: Deployment, request_id: str) -> list[str]:
    return sorted(n["description"] for n in d.fake.notes if n["request_id"] == request_id)


EXPECTED_NOTES = ["VPN down for jane@example.com", "urgent (Open)"]


def test_cloud_shapes_reach_the_rules_as_one_request(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=RULES) as d:
        # Cloud v3, ids only: read once for both rules.
        d.fake.edit_request("5001", **STORED)
        send(d, {"event": "request.updated", "request": {"id": "5001"}}, "v3")
        assert d.wait_for("v3").status == "done"
        assert notes_of(d, "5001") == EXPECTED_NOTES
        assert d.fake.reads == ["5001"]

        # A Deluge custom function posting its requestObj: complete, nothing is read.
        request_obj = {"id": "5002", **STORED, "last_updated_time": {"value": "1700000000000"}}
        send(d, {"event": "request.updated", "requestObj": request_obj}, "deluge")
        event = d.wait_for("deluge")
        assert event.status == "done", event.error
        assert event.request_id == "5002"
        assert notes_of(d, "5002") == EXPECTED_NOTES

        # The older on-premises JSON with upper-case keys.
        upper = {
            "WORKORDERID": "5003",
            "SUBJECT": "VPN down",
            "PRIORITY": "High",
            "STATUS": "Open",
            "REQUESTER": "Jane Roe",
            "REQUESTEREMAIL": "jane@example.com",
        }
        send(d, {"event": "request.updated", "request": upper}, "upper")
        assert d.wait_for("upper").status == "done"
        assert notes_of(d, "5003") == EXPECTED_NOTES
        assert d.fake.reads == ["5001"]  # explicit event ids: no read for the duplicate check

        # Some fields, but not all the rules read: read once to complete them.
        d.fake.edit_request("5005", **STORED)
        send(d, {"event": "request.updated", "request": {"id": "5005", "subject": "VPN down"}}, "p")
        assert d.wait_for("p").status == "done"
        assert notes_of(d, "5005") == EXPECTED_NOTES
        assert d.fake.reads == ["5001", "5005"]

        # Only the number people see: searched, then read by its internal id.
        d.fake.edit_request("5004", display_id="77", **STORED)
        send(d, {"event": "request.updated", "request": {"display_id": "77"}}, "display")
        event = d.wait_for("display")
        assert event.status == "done", event.error
        assert event.request_id == "5004"
        assert notes_of(d, "5004") == EXPECTED_NOTES
        [search] = d.fake.searches
        assert search["search_criteria"] == [
            {"field": "display_id", "condition": "is", "value": "77"}
        ]
        assert d.fake.reads == ["5001", "5005", "5004"]

        # A display id SDP does not know: the event fails and says so.
        send(d, {"event": "request.updated", "request": {"display_id": "404"}}, "unknown")
        event = d.wait_for("unknown")
        assert event.status == "failed"
        assert "SDP has no request with display_id '404'" in (event.error or "")


def _onprem(fake_url: str, fake: FakeSdp) -> str:
    fake.onprem_key = "onprem-technician-key"
    return textwrap.dedent(
        f"""\
        connections:
          sdp:
            name: ServiceDesk Plus on-premises
            service: sdp_onprem
            base_url: {fake_url}
            values: {{authtoken: "${{SDP_ONPREM_KEY}}"}}
        """
    )


def test_on_premises_request_is_read_with_its_authtoken_and_normalised(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(
        tmp_path,
        database_url,
        redis_url,
        rules=RULES,
        connections=_onprem,
        extra_env={"SDP_ONPREM_KEY": "onprem-technician-key"},
    ) as d:
        # On-premises v3 as some builds send it: numeric ids, numeric times.
        d.fake.edit_request(
            "6001", **STORED, display_id=12, last_updated_time={"value": 1700000000000}
        )
        d.fake.requests["6001"]["id"] = 6001
        send(d, {"event": "request.updated", "request": {"id": "6001"}}, "onprem")
        event = d.wait_for("onprem")
        assert event.status == "done", event.error
        assert notes_of(d, "6001") == EXPECTED_NOTES
        assert event.request_snapshot is not None
        assert event.request_snapshot["id"] == "6001"
        assert d.fake.reads == ["6001"]

        send(d, {"event": "request.updated", "request": {"display_id": "12"}}, "onprem-display")
        event = d.wait_for("onprem-display")
        assert event.status == "done", event.error
        assert event.request_id == "6001"
