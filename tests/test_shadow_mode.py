"""Shadow mode through real parts: webhook over HTTP → Redis → a real worker process.

A shadow rule's steps are rendered and built exactly as live, and what each would have
sent is recorded; the fake SDP receives nothing from them, while a live rule on the same
event does call it. Secrets never reach the run history; `events show` and the runs page
show the shadow rules apart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from deskwire.event_views import describe_event, show_event
from deskwire.tables import RuleRun, StepRun
from deskwire.web_server import build_web_app
from tests.fakes.sdp import FakeSdp
from tests.integration import ROOT, Deployment, deployment
from tests.pages_conftest import Admin
from tests.wsgi_server import serving

pytestmark = pytest.mark.integration

LIVE_AND_SHADOW = """\
rules:
  - id: live-note
    on: [request.created]
    order: 10
    actions:
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Live: {{ request.subject }}"
  - id: shadow-triage
    mode: shadow
    on: [request.created]
    order: 20
    stop: true
    actions:
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Shadow: {{ request.subject }}"
          show_to_requester: true
      - id: say
        uses: log
        with: {message: "shadow saw {{ request.id }}"}
      - id: assign
        uses: sdp.assign_request
        if: "{{ steps.note.status == 200 }}"
        with:
          request_id: "{{ request.id }}"
          group: "Network"
          technician: "{{ steps.note.json.created_by.email_id }}"
      - id: relay
        uses: http.post
        with:
          connection: sdp
          url: "requests/{{ request.id }}/worklogs"
          headers: {X-Echo: fake-secret}
          json: {copied: "fake-secret", said: "{{ steps.say.text }}"}
  - id: shadow-low
    mode: shadow
    on: [request.created]
    order: 30
    when: {request.priority.name: Low}
    actions:
      - {uses: sdp.close_request, with: {request_id: "{{ request.id }}"}}
"""


def _history(d: Deployment, pk: int) -> str:
    """Every rule and step record of an event, as one text (to look for secrets in)."""
    with d.sessions()() as session:
        rules = session.scalars(select(RuleRun).where(RuleRun.event_pk == pk)).all()
        steps = session.scalars(select(StepRun).where(StepRun.event_pk == pk)).all()
        rows = [[r.rule_id, r.outcome, r.detail] for r in rules]
        rows += [[s.step_id, s.status, s.error, s.output] for s in steps]
    return json.dumps(rows)


def _secrets(fake: FakeSdp) -> set[str]:
    return {fake.client_secret, fake.refresh_token, *fake.issued}


def test_shadow_rule_records_what_it_would_send_and_sends_nothing(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=LIVE_AND_SHADOW) as d:
        body = {
            "event": "request.created",
            "event_id": "sh-1",
            "request": {"id": "501", "subject": "Printer on fire", "priority": {"name": "High"}},
        }
        assert d.post(body).status_code == 202
        event = d.wait_for("sh-1")
        assert event.status == "done", event.error

        # The live rule called SDP; nothing else reached it.
        assert [note["description"] for note in d.fake.notes] == ["Live: Printer on fire"]
        assert [(c["method"], c["path"]) for c in d.fake.calls] == [("POST", "requests/501/notes")]
        assert d.fake.updates == []
        assert d.fake.worklogs == []

        runs = d.rule_runs(event.id)
        assert (runs["live-note"].outcome, runs["live-note"].shadow) == ("done", False)
        # A shadow rule's `stop` is recorded, never obeyed: the later rule still ran.
        assert (runs["shadow-triage"].outcome, runs["shadow-triage"].shadow) == ("stopped", True)
        assert (runs["shadow-low"].matched, runs["shadow-low"].shadow) == (False, True)

        steps = {(s.rule_id, s.step_id): s for s in d.step_runs(event.id)}
        note = steps["shadow-triage", "note"]
        assert (note.status, note.http_status, note.duration_ms) == ("shadow", None, None)
        [sent] = note.output["would_send"]
        api = d.fake_url + d.fake.api_prefix
        assert (sent["method"], sent["url"]) == ("POST", f"{api}/requests/501/notes")
        assert sent["body"]["input_data"]["request_note"] == {
            "description": "Shadow: Printer on fire",
            "show_to_requester": True,
            "notify_technician": False,
            "mark_first_response": False,
            "add_to_linked_requests": False,
        }
        assert sent["headers"]["accept"] == "application/vnd.manageengine.sdp.v3+json"
        assert not {"authorization", "cookie"} & {name.lower() for name in sent["headers"]}

        # A `log` step runs; its outputs reach later steps.
        assert steps["shadow-triage", "say"].status == "succeeded"
        worker_log = d.worker_log()
        assert "shadow saw 501" in worker_log
        # The worker log never reads as if the shadow requests were made.
        assert f"HTTP Request (shadow, not sent): PUT {api}/requests/501/assign" in worker_log
        assert f'PUT {api}/requests/501/assign "HTTP' not in worker_log

        # Outputs of shadow steps do not exist: `if` is taken as true (and says so), and
        # what would only be known live is marked in the request.
        assign = steps["shadow-triage", "assign"]
        assert assign.status == "shadow"
        assert "`if` reads steps.note.status" in assign.output["note"]
        [sent] = assign.output["would_send"]
        assert (sent["method"], sent["url"]) == ("PUT", f"{api}/requests/501/assign")
        assert sent["body"]["input_data"]["request"] == {
            "group": {"name": "Network"},
            "technician": {"name": "<known at run time: steps.note.json.created_by.email_id>"},
        }

        # http.* through a connection: its base URL, the rule's headers and body, the
        # connection's secrets masked.
        [sent] = steps["shadow-triage", "relay"].output["would_send"]
        assert (sent["method"], sent["url"]) == ("POST", f"{api}/requests/501/worklogs")
        assert sent["headers"]["x-echo"] == "***"
        assert sent["body"] == {"copied": "***", "said": "shadow saw 501"}

        history = _history(d, event.id)
        assert d.fake.issued, "the live rule fetched an access token"
        for secret in _secrets(d.fake):
            assert secret not in history

        # `deskwire events show`: shadow rules in a section of their own.
        shown = describe_event(show_event(d.settings, "sh-1"))
        live_part, shadow_part = shown.split("shadow rules (mode: shadow; nothing was called):")
        assert "rule live-note: done" in live_part
        assert "shadow-triage" not in live_part
        assert (
            f"step note (sdp.add_note): shadow — would have sent: POST {api}/requests/501/notes"
            in shadow_part
        )
        assert '"description": "Shadow: Printer on fire"' in shadow_part
        assert "note: `if` reads steps.note.status" in shadow_part
        assert "rule shadow-low: not_matched" in shadow_part
        for secret in _secrets(d.fake):
            assert secret not in shown

        # The runs page: a "Shadow rules" section after the live ones, badged.
        settings = d.settings.model_copy(
            update={
                "admin_password": SecretStr("pw-for-shadow-pages"),
                "secret_key": [SecretStr(d.env["DESKWIRE_SECRET_KEY"])],
            }
        )
        with serving(build_web_app(settings)) as base:
            admin = Admin(base)
            try:
                assert admin.sign_in("pw-for-shadow-pages").status_code == 303
                page = admin.get(f"/runs/{event.id}").text
            finally:
                admin.close()
        live_html, shadow_html = page.split('<h2 id="shadow">Shadow rules</h2>')
        assert 'id="rule-live-note"' in live_html
        assert "rule-shadow-triage" not in live_html
        assert 'id="rule-shadow-triage"' in shadow_html
        assert '<span class="badge badge-shadow">shadow</span>' in shadow_html
        found = re.search(r'id="would-send-shadow-triage-note">(.*?)</tr>', shadow_html, re.S)
        assert found is not None
        assert f"POST {api}/requests/501/notes" in found.group(1)
        for secret in _secrets(d.fake):
            assert secret not in page


def _no_connections(_url: str, _fake: FakeSdp) -> str:
    return "connections: {}\n"


SHADOW_ONLY = """\
mode: shadow
rules:
  - id: acknowledge
    on: [request.created]
    actions:
      - uses: sdp.add_note
        with: {request_id: "{{ request.id }}", description: "Seen {{ request.subject }}"}
  - id: broken
    on: [request.created]
    actions:
      - uses: sdp.add_note
        with: {request_id: "{{ request.subject }} now", description: "never built"}
"""


def test_without_any_sdp_connection_shadow_still_records_and_the_event_is_done(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(
        tmp_path, database_url, redis_url, rules=SHADOW_ONLY, connections=_no_connections
    ) as d:
        request = {"id": "9", "subject": "Mouse"}
        body = {"event": "request.created", "event_id": "sh-2", "request": request}
        assert d.post(body).status_code == 202
        event = d.wait_for("sh-2")
        assert event.status == "done", event.error
        # A shadow step fails where live would fail before sending; the event is still done.
        broken = d.rule_runs(event.id)["broken"]
        assert (broken.outcome, broken.shadow) == ("failed", True)
        assert "request_id is 'Mouse now'; SDP request ids are digits" in (broken.detail or "")
        steps = {s.rule_id: s for s in d.step_runs(event.id)}
        assert steps["broken"].status == "failed"
        step = steps["acknowledge"]
        assert step.status == "shadow"
        [sent] = step.output["would_send"]
        assert sent["url"] == "https://<no sdp connection configured>/api/v3/requests/9/notes"
        assert sent["body"]["input_data"]["request_note"]["description"] == "Seen Mouse"
        assert d.fake.calls == []
        assert d.fake.token_requests == 0


def _example_connections_unset(_url: str, _fake: FakeSdp) -> str:
    # The quick start's file, with its ${SDP_…} variables certainly unset.
    text = (ROOT / "examples" / "connections.yml").read_text()
    return text.replace("${SDP_", "${UNSET_FOR_TEST_SDP_")


def test_the_quick_start_acts_on_the_sample_webhook_without_sdp_credentials(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    rules = (ROOT / "examples" / "rules" / "notes.yml").read_text()
    with deployment(
        tmp_path, database_url, redis_url, rules=rules, connections=_example_connections_unset
    ) as d:
        body: dict[str, Any] = json.loads((ROOT / "examples" / "webhook.json").read_text())
        assert d.post(body).status_code == 202
        event = d.wait_for(body["event_id"])
        assert event.status == "done", event.error
        runs = d.rule_runs(event.id)
        assert {rule_id: (r.outcome, r.shadow) for rule_id, r in runs.items()} == {
            "vip-high-priority": ("done", True),
            "acknowledge-new-requests": ("done", True),
        }
        shown = describe_event(show_event(d.settings, body["event_id"]))
        api = "https://sdpondemand.manageengine.com/app/ithelpdesk/api/v3"
        assert f"would have sent: POST {api}/requests/100000000000001/notes" in shown
        assert "deskwire received “VPN is down in the Berlin office” from Ada Lovelace." in shown
        assert d.fake.calls == []
        assert d.fake.token_requests == 0
