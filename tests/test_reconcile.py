"""Reconciliation through real parts: a fake SDP that "drops" webhooks (the test does not
send them), the web app, Redis, a real worker process and ``deskwire reconcile``.

A change whose webhook was dropped runs its rules once, marked reconciled; a change whose
webhook came runs once whichever comes first; progress survives a restart; paging goes
past 100 changes (with ties of ``last_updated_time`` across a page boundary); a 429 with
``Retry-After`` is honoured.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from deskwire.reconcile_progress import Progress, load_progress
from deskwire.tables import Event
from tests.fakes.sdp import FakeSdp
from tests.integration import ROOT, Deployment, deployment

pytestmark = pytest.mark.integration

NOTE_RULE = """\
rules:
  - id: note-it
    on: [request.created, request.updated]
    actions:
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "{{ event.type }} reconciled={{ event.reconciled }}"
"""
# Reconciliation reads changes up to now: the test's changes are never too young.
NO_DELAY = {"DESKWIRE_RECONCILE_DELAY": "0"}
FINISHED = ("done", "failed", "duplicate")
# Calls nothing at SDP: the listed request carries every field, so the fake's injected
# failures meet the searches only.
LOG_RULE = """\
rules:
  - id: log-it
    on: [request.created, request.updated]
    actions:
      - uses: log
        with: {message: "{{ event.type }} {{ request.id }} reconciled={{ event.reconciled }}"}
"""


def fake_of_recent_changes() -> FakeSdp:
    """A fake SDP whose clock stands ten minutes ago, so its changes are in the look-back."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    return FakeSdp(clock_ms=now_ms - 600_000)


def reconcile(d: Deployment, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``deskwire reconcile …`` as an operator runs it against this deployment."""
    result = subprocess.run(
        [sys.executable, "-P", "-m", "deskwire", "reconcile", *args],
        env={**os.environ, **d.env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result


def events_show(d: Deployment, event_id: str) -> str:
    """``deskwire events show`` of one event."""
    result = subprocess.run(
        [sys.executable, "-P", "-m", "deskwire", "events", "show", event_id],
        env={**os.environ, **d.env}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def notes_of(fake: FakeSdp, request_id: str) -> list[str]:
    return [n["description"] for n in fake.notes if n["request_id"] == request_id]


def reconciled_events(d: Deployment) -> list[Event]:
    with d.sessions()() as session:
        return list(session.scalars(select(Event).where(Event.reconciled).order_by(Event.id)))


def event_of_request(d: Deployment, request_id: str, *, reconciled: bool) -> Event | None:
    with d.sessions()() as session:
        return session.scalar(
            select(Event)
            .where(Event.request_id == request_id, Event.reconciled.is_(reconciled))
            .order_by(Event.id.desc())
        )


def wait_until(check: Callable[[], Any], what: str, d: Deployment, timeout: float = 90) -> Any:
    """Poll ``check`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if d.worker is not None and d.worker.poll() is not None:
            raise AssertionError(f"the worker exited with {d.worker.returncode}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def all_finished(d: Deployment) -> bool:
    with d.sessions()() as session:
        left = session.scalar(
            select(func.count()).select_from(Event).where(Event.status.in_(("queued", "running")))
        )
    return left == 0


def test_a_dropped_webhook_runs_once_marked_reconciled_and_a_delivered_one_not_again(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    fake = fake_of_recent_changes()
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE, fake=fake,
                    extra_env=NO_DELAY) as d:  # fmt: skip
        fake.edit_request("701", subject="delivered")
        response = d.post({"id": "701"}, path="/webhooks/sdp/sdp/request.created")
        assert d.wait_for(response.json()["event_id"]).status == "done"
        fake.edit_request("702", subject="dropped")  # SDP never sends this webhook

        out = reconcile(d, "run").stdout
        assert "sdp: 1 call(s), 2 changed request(s) read, 1 event(s) made in " in out
        [event] = reconciled_events(d)
        assert (event.request_id, event.event_type) == ("702", "request.created")
        done = d.wait_for(event.event_id)
        assert done.status == "done", done.error
        assert (done.identity or "").startswith("reconciled: SDP listed request 702")
        assert notes_of(fake, "702") == ["request.created reconciled=True"]
        shown = events_show(d, event.event_id)
        assert "(reconciled: no webhook of this change was seen), request 702" in shown
        assert notes_of(fake, "701") == ["request.created reconciled=False"]

        # Again: nothing new (both changes are claimed); no rule runs twice.
        out = reconcile(d, "run").stdout
        assert "0 event(s) made in " in out
        assert len(reconciled_events(d)) == 1
        status = reconcile(d, "status").stdout
        assert "sdp (connection sdp): changes read up to" in status
        assert "1 in all" in status


def test_a_webhook_that_comes_after_its_change_was_reconciled_does_not_run_again(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    fake = fake_of_recent_changes()
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE, fake=fake,
                    extra_env=NO_DELAY) as d:  # fmt: skip
        fake.edit_request("711", subject="late webhook")
        fake.edit_request("711", status={"name": "Open"})  # an update: request.updated
        reconcile(d, "run")
        [event] = reconciled_events(d)
        assert event.event_type == "request.updated"
        assert d.wait_for(event.event_id).status == "done"
        # The webhook of the same change arrives late (SDP retried, or the network did).
        late = d.post({"id": "711"}, path="/webhooks/sdp/sdp/request.updated")
        webhook = d.wait_for(late.json()["event_id"], FINISHED)
        assert webhook.status == "duplicate"
        assert f"duplicate of reconciled event {event.id}" in (webhook.identity or "")
        assert notes_of(fake, "711") == ["request.updated reconciled=True"]


def test_progress_survives_a_worker_restart(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    fake = fake_of_recent_changes()
    env = {**NO_DELAY, "DESKWIRE_RECONCILE_INTERVAL": "1"}
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE, fake=fake,
                    extra_env=env) as d:  # fmt: skip
        fake.edit_request("721", subject="first")
        first = wait_until(lambda: event_of_request(d, "721", reconciled=True), "721", d)
        assert d.wait_for(first.event_id).status == "done"
        d.stop_worker()
        stored = load_progress(d.sessions(), "sdp")
        assert isinstance(stored, Progress)
        assert stored.last_complete
        searches_before = len(fake.searches)

        # SDP stamps changes with its own clock, which went on while the worker was down.
        fake.clock_ms = max(fake.clock_ms, stored.watermark_ms + 5000)
        fake.edit_request("722", subject="while stopped")
        d.start_worker()
        second = wait_until(lambda: event_of_request(d, "722", reconciled=True), "722", d)
        assert d.wait_for(second.event_id).status == "done"
        # The first search after the restart starts where the stored progress stopped.
        resumed = fake.searches[searches_before]["search_criteria"][0]
        assert resumed == {"field": "last_updated_time", "condition": "greater or equal",
                           "value": str(stored.watermark_ms + 1)}  # fmt: skip
        wait_until(lambda: all_finished(d), "all events finished", d)
        assert [e.request_id for e in reconciled_events(d)] == ["721", "722"]
        assert notes_of(fake, "721") == ["request.created reconciled=True"]
        assert notes_of(fake, "722") == ["request.created reconciled=True"]
        assert "reconciliation every 1s" in d.worker_log()


def _many_changes(fake: FakeSdp, count: int, *, tie: range) -> None:
    """``count`` new requests; those in ``tie`` share one ``last_updated_time``."""
    for number in range(count):
        fake.edit_request(str(9000 + number), subject=f"bulk {number}")
    shared = fake.requests[str(9000 + tie.start)]["last_updated_time"]
    for number in tie:
        request = fake.requests[str(9000 + number)]
        request["last_updated_time"] = dict(shared)
        request["created_time"] = dict(shared)


def test_paging_reads_every_change_past_page_and_call_bounds(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    fake = fake_of_recent_changes()
    env = {**NO_DELAY, "DESKWIRE_RECONCILE_MAX_CALLS": "2"}
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE, fake=fake,
                    extra_env=env) as d:  # fmt: skip
        # 250 changes; 40 of them at one time, across the boundary of the first page.
        _many_changes(fake, 250, tie=range(80, 120))
        out = reconcile(d, "run").stdout
        assert "sdp: 2 call(s), 200 changed request(s) read, 200 event(s) made in " in out
        assert "more to read" in out
        out = reconcile(d, "run").stdout
        # Carries on at the last time read: re-reads its ties (skipped), then the rest.
        assert "50 event(s) made in " in out
        assert "more to read" not in out
        assert {len(s.get("search_criteria", [])) for s in fake.searches} == {2}
        assert max(int(s["row_count"]) for s in fake.searches) == 100
        wait_until(lambda: all_finished(d), "all events finished", d, timeout=240)
        events = reconciled_events(d)
        assert len(events) == 250
        assert {e.status for e in events} == {"done"}
        assert sorted(n["request_id"] for n in fake.notes) == sorted(fake.requests)


def test_a_429_with_retry_after_pauses_reconciliation_for_that_long(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    fake = fake_of_recent_changes()
    env = {**NO_DELAY, "DESKWIRE_RECONCILE_INTERVAL": "1"}
    fake.fail_next = [None, (429, 4015)]  # the first page passes, the second is refused
    fake.retry_after = "3"
    _many_changes(fake, 150, tie=range(0, 1))
    with deployment(tmp_path, database_url, redis_url, rules=LOG_RULE, fake=fake,
                    extra_env=env) as d:  # fmt: skip
        wait_until(lambda: len(reconciled_events(d)) == 150, "150 reconciled events", d)
        # Three searches: the first page, the refused one (not answered with rows), and,
        # not before Retry-After's 3 seconds, the rest.
        # (Later runs, every second, each make one more search that finds nothing new.)
        assert {c["path"] for c in fake.calls} == {"requests"}
        assert fake.searches[1]["search_criteria"] != fake.searches[0]["search_criteria"]
        assert fake.searched_at[1] - fake.searched_at[0] >= 3.0
        assert "reconciliation of sdp stopped after 2 call(s)" in d.worker_log()
        assert "429" in d.worker_log()
        wait_until(lambda: all_finished(d), "all events finished", d, timeout=240)
        assert {e.status for e in reconciled_events(d)} == {"done"}
        assert fake.reads == []  # the listed request was enough: no read per event

        # The worker writes its counts every half second (deskwire.metrics_store).
        def scraped() -> str | None:
            text = httpx.get(d.web_url + "/metrics", timeout=10).text
            return text if 'deskwire_reconciled_events_total{source="sdp"} 150' in text else None

        metrics = wait_until(scraped, "reconciliation counts in /metrics", d, timeout=10)
        assert 'deskwire_reconciled_events_total{source="sdp"} 150' in metrics
        assert 'deskwire_reconcile_errors_total{source="sdp"} 1' in metrics
        assert 'deskwire_reconcile_calls_total{source="sdp"}' in metrics


def test_reconciliation_is_off_unless_configured(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    fake = fake_of_recent_changes()
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE, fake=fake) as d:
        fake.edit_request("731", subject="dropped")
        fake.edit_request("732", subject="delivered")
        response = d.post({"id": "732"}, path="/webhooks/sdp/sdp/request.created")
        assert d.wait_for(response.json()["event_id"]).status == "done"
        # The worker is up and has run its timers: it never asked SDP for changes.
        assert fake.searches == []
        assert "reconciliation every" not in d.worker_log()
        assert "reconciliation is off" in reconcile(d, "status").stdout
        assert "no source reconciled yet" in reconcile(d, "status").stdout
        assert redis.Redis.from_url(redis_url).get("deskwire:reconcile") is None
