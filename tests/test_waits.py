"""Durable waits end to end (issue 13, point 2): a real worker, real Redis, the fake SDP.

A `wait` step's row fires once when due and the rest of its rule runs; `until` is checked
against the request re-read from SDP; a newer event and the CLI cancel a wait; a wait
survives a worker restart and a Redis restart and still fires exactly once, within the
bound of docs/reliability.md ("Waits").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from deskwire.embedded import EmbeddedRedis
from deskwire.tables import Wait
from deskwire.web_server import build_web_app
from tests.integration import ROOT, Deployment, deployment
from tests.pages_conftest import PASSWORD, Admin
from tests.wsgi_server import serving

pytestmark = pytest.mark.integration

T = TypeVar("T")

# docs/reliability.md: a wait's rest of the rule runs within its duration plus one sweep
# interval plus one event run once a worker and Redis are up; the margin is for a loaded
# 2-core machine.
FIRE_MARGIN = 20.0
RECOVERY_BOUND = 60.0  # docs/reliability.md: within 60 s of Redis and a worker being back
# Recovery-relevant settings at their defaults (the deployment helper shortens the sweep).
DEFAULTS = {"DESKWIRE_SWEEP_INTERVAL": "5", "DESKWIRE_BROKER_RECONNECT_MAX": "10"}

RULES = """\
rules:
  - id: escalate
    on: request.created
    cancel_waits_on: [request.updated]
    actions:
      - id: first
        uses: sdp.add_note
        with: {request_id: "{{ request.id }}", description: "before {{ event.id }}"}
      - id: pause
        uses: wait
        with:
          duration: {duration}
          until: {request.technician: {empty: true}}
      - uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: >-
            after {{ event.id }} {{ steps.first.json.id }}:{{ steps.pause.json.technician }}
"""


def rules(duration: str) -> str:
    return RULES.replace("{duration}", duration)


def poll(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """Wait until ``probe`` returns something (not None/False), within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


def waits(d: Deployment) -> list[Wait]:
    with d.sessions()() as session:
        rows = list(session.scalars(select(Wait).order_by(Wait.id)))
        for row in rows:
            session.expunge(row)
        return rows


def notes(d: Deployment, prefix: str) -> list[str]:
    return [n["description"] for n in d.fake.notes if n["description"].startswith(prefix)]


def created(event_id: str, request_id: str) -> dict[str, Any]:
    return {
        "event": "request.created",
        "event_id": event_id,
        "request": {"id": request_id, "subject": "printer on fire"},
    }


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def started_wait(d: Deployment, event_id: str) -> Wait:
    """Wait until the event's first run ended with its rule waiting; its wait row."""
    event = d.wait_for(event_id)
    assert event.status == "done", event.error
    assert d.rule_runs(event.id)["escalate"].outcome == "waiting"
    (row,) = [w for w in waits(d) if w.event_pk == event.id]
    assert row.state == "waiting"
    return row


def test_a_short_wait_fires_once_and_the_rest_of_the_rule_runs(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=rules("2s")) as d:
        d.fake.edit_request("501", subject="printer on fire", technician=None)
        assert d.post(created("w1", "501")).status_code == 202
        row = started_wait(d, "w1")
        assert notes(d, "before") == ["before w1"]
        assert notes(d, "after") == []
        after = poll("the note after the wait", lambda: notes(d, "after"), 2 + FIRE_MARGIN)
        late = (datetime.now(UTC) - aware(row.due_at)).total_seconds()
        assert after == ["after w1 1:None"]
        event = d.wait_for("w1")
        assert event.status == "done"
        assert d.rule_runs(event.id)["escalate"].outcome == "done"
        steps = {s.step_id: s for s in d.step_runs(event.id)}
        assert steps["pause"].status == "succeeded"
        assert [w.state for w in waits(d)] == ["fired"]
        assert waits(d)[0].id == row.id
        assert d.fake.reads.count("501") == 1  # `until` read the request once
        assert d.worker_log().count("fired; event") == 1
        print(f"\n2 s wait: the note after it was written {late:.1f}s after the wait was due")


def test_until_no_longer_holding_skips_the_rest(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=rules("1s")) as d:
        d.fake.edit_request("502", subject="printer on fire", technician=None)
        assert d.post(created("w2", "502")).status_code == 202
        row = started_wait(d, "w2")
        d.fake.edit_request("502", technician={"name": "Ann", "email_id": "ann@example.com"})
        skipped = poll(
            "the wait skipped",
            lambda: [w for w in waits(d) if w.state == "skipped"],
            1 + FIRE_MARGIN,
        )
        assert [w.id for w in skipped] == [row.id]
        assert "`until` no longer held" in (skipped[0].cancelled_by or "")
        event = d.wait_for("w2")
        rule = d.rule_runs(event.id)["escalate"]
        assert rule.outcome == "done"
        assert "request.technician" in (rule.detail or "")
        assert "the rest of the rule was skipped" in (rule.detail or "")
        steps = {s.step_id: s for s in d.step_runs(event.id)}
        assert steps["pause"].status == "skipped"
        assert "step3" not in steps
        assert notes(d, "after") == []


def test_a_newer_event_about_the_request_cancels_the_wait(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=rules("1h")) as d:
        assert d.post(created("w3", "503")).status_code == 202
        assert d.post(created("other", "504")).status_code == 202  # another request's wait
        row = started_wait(d, "w3")
        started_wait(d, "other")
        update = {
            "event": "request.updated",
            "event_id": "w3-edit",
            "request": {"id": "503", "subject": "edited by a person"},
        }
        assert d.post(update).status_code == 202
        newer = d.wait_for("w3-edit")
        assert newer.status == "done"
        by_id = {w.id: w for w in waits(d)}
        assert by_id[row.id].state == "cancelled"
        assert by_id[row.id].cancelled_by == f"event {newer.id} (request.updated)"
        assert [w.state for w in by_id.values() if w.id != row.id] == ["waiting"]
        first = d.wait_for("w3")
        rule = d.rule_runs(first.id)["escalate"]
        assert rule.outcome == "cancelled"
        assert f"cancelled by event {newer.id}" in (rule.detail or "")
        steps = {s.step_id: s for s in d.step_runs(first.id)}
        assert steps["pause"].status == "cancelled"
        shown = run_cli(d, "events", "show", "w3")
        assert shown.returncode == 0, shown.stderr
        assert "rule escalate: cancelled" in shown.stdout
        assert f"wait {row.id} (rule escalate, step pause): cancelled" in shown.stdout
        by_newer = run_cli(d, "events", "show", "w3-edit")
        assert f"cancelled wait {row.id} of event {first.id} (rule escalate)" in by_newer.stdout


def run_cli(d: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "deskwire", *args],
        env=d.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_lists_and_cancels_a_wait(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=rules("1h")) as d:
        assert d.post(created("w4", "505")).status_code == 202
        row = started_wait(d, "w4")
        listed = run_cli(d, "waits", "list")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines()[0].split()[:3] == ["ID", "STATE", "DUE"]
        assert listed.stdout.splitlines()[1].split()[:2] == [str(row.id), "waiting"]
        assert "escalate  pause" in listed.stdout
        other = run_cli(d, "waits", "list", "--request", "999")
        assert other.stdout.strip() == "no waits"
        bad = run_cli(d, "waits", "list", "--request", "9 9")
        assert bad.returncode == 2
        assert "is not a request id" in bad.stderr

        cancelled = run_cli(d, "waits", "cancel", str(row.id))
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"wait {row.id} cancelled" in cancelled.stdout
        (after,) = waits(d)
        assert (after.state, after.cancelled_by) == ("cancelled", "deskwire waits cancel")
        assert d.rule_runs(after.event_pk)["escalate"].outcome == "cancelled"

        again = run_cli(d, "waits", "cancel", str(row.id))
        assert again.returncode == 1
        assert "it is cancelled, not waiting" in again.stderr
        missing = run_cli(d, "waits", "cancel", "424242")
        assert missing.returncode == 1
        assert "no wait with the id 424242" in missing.stderr
        word = run_cli(d, "waits", "cancel", "seven")
        assert word.returncode == 2
        assert "is not a valid integer" in word.stderr
        assert run_cli(d, "waits", "list").stdout.strip() == "no waits"
        everything = run_cli(d, "waits", "list", "--all", "--json")
        assert '"state": "cancelled"' in everything.stdout


@contextmanager
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test alone (no persistence), so the test may kill it."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    "back_before_due", [True, False], ids=["back-before-due", "back-after-due"]
)
def test_a_wait_survives_a_worker_kill_and_a_redis_restart_and_fires_once(
    tmp_path: Path, database_url: str, back_before_due: bool
) -> None:
    with (
        own_redis(tmp_path) as server,
        deployment(
            tmp_path, database_url, server.url, rules=rules("8s"), start_worker=False,
            extra_env=DEFAULTS,
        ) as d,
    ):  # fmt: skip
        d.start_worker(concurrency=2)
        d.fake.edit_request("506", subject="printer on fire", technician=None)
        assert d.post(created("w5", "506")).status_code == 202
        row = started_wait(d, "w5")
        # Both die while the wait waits: the worker's whole process group, and Redis
        # without persistence (the broker loses everything it held).
        assert d.worker is not None
        os.killpg(d.worker.pid, signal.SIGKILL)
        d.worker.wait(timeout=30)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
        due = aware(row.due_at)
        if not back_before_due:  # stay down until the wait is due
            poll("the wait due", lambda: datetime.now(UTC) > due, 8 + FIRE_MARGIN)
        server.start()
        d.start_worker(concurrency=2)
        back = time.monotonic()
        wait_left = max(0.0, (due - datetime.now(UTC)).total_seconds())
        bound = wait_left + RECOVERY_BOUND + FIRE_MARGIN
        after = poll("the note after the wait", lambda: notes(d, "after"), bound)
        took = time.monotonic() - back - wait_left
        assert after == ["after w5 1:None"]
        assert d.wait_for("w5").status == "done"
        assert [w.state for w in waits(d)] == ["fired"]
        assert d.worker_log().count("fired; event") == 1
        when = "before" if back_before_due else "after"
        print(f"\nwait 8 s, worker and Redis back {when} due: rest ran {took:.1f}s after")
        assert notes(d, "after") == ["after w5 1:None"]
        assert notes(d, "before") == ["before w5"]


def test_the_runs_pages_list_waits_and_cancel_behind_sign_in_and_csrf(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=rules("1h")) as d:
        for event_id, request_id in (("p1", "601"), ("p2", "602")):
            assert d.post(created(event_id, request_id)).status_code == 202
        first, second = started_wait(d, "p1"), started_wait(d, "p2")
        edit = {"event": "request.updated", "event_id": "p2-edit",
                "request": {"id": "602", "subject": "edited by a person"}}  # fmt: skip
        assert d.post(edit).status_code == 202
        newer = d.wait_for("p2-edit")
        settings = d.settings.model_copy(
            update={
                "admin_password": SecretStr(PASSWORD),
                "secret_key": [SecretStr("test-secret-key-for-e2e")],
            }
        )
        with serving(build_web_app(settings)) as base:
            anonymous = Admin(base)
            assert anonymous.get("/runs/waits").status_code == 303
            anonymous.close()
            admin = Admin(base)
            assert admin.sign_in().status_code == 303
            page = admin.get("/runs/waits").text
            assert f'id="wait-{first.id}" data-state="waiting"' in page
            assert f'id="cancel-{first.id}"' in page
            assert f'id="wait-{second.id}"' not in page  # cancelled: only with ?all=1
            assert (
                f'id="wait-{second.id}" data-state="cancelled"'
                in admin.get("/runs/waits?all=1").text
            )
            forged = {"csrf_token": "forged-token-value-that-is-long-enough-xx"}
            refused = admin.post(f"/runs/waits/{first.id}/cancel", forged, csrf=False)
            assert refused.status_code == 400
            assert [w.state for w in waits(d) if w.id == first.id] == ["waiting"]
            done = admin.follow(admin.post(f"/runs/waits/{first.id}/cancel"))
            assert f"Wait {first.id} is cancelled" in done.text
            assert [w.cancelled_by for w in waits(d) if w.id == first.id] == ["the runs page"]
            again = admin.follow(admin.post(f"/runs/waits/{first.id}/cancel"))
            assert "it no longer waits" in again.text
            assert admin.post("/runs/waits/99999/cancel").status_code == 404
            run = admin.get(f"/runs/{first.event_pk}").text
            assert f'id="run-wait-{first.id}" data-state="cancelled"' in run
            assert 'data-outcome="cancelled"' in run
            cancelling = admin.get(f"/runs/{newer.id}").text
            assert f'id="cancelled-wait-{second.id}"' in cancelling
            admin.close()


def test_a_wait_whose_rule_was_removed_ends_with_a_reason(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=rules("3s")) as d:
        assert d.post(created("w6", "507")).status_code == 202
        row = started_wait(d, "w6")
        d.write_rules("rules:\n  - id: other\n    on: request.closed\n")
        poll(
            "the rule's end recorded",
            lambda: d.rule_runs(row.event_pk)["escalate"].outcome == "cancelled",
            3 + FIRE_MARGIN,
        )
        detail = d.rule_runs(row.event_pk)["escalate"].detail or ""
        assert f"wait {row.id} fired, but the rule no longer runs" in detail
        assert d.wait_for("w6").status == "done"
        assert notes(d, "after") == []
