"""/metrics of a real web process (gunicorn, two workers) and JSON logs of a real worker:
counts from every process, read at scrape time from the database and Redis."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from deskwire.embedded import free_port
from tests.integration import ROOT, Deployment, deployment
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

RULES = """\
rules:
  - id: acknowledge
    on: [request.created]
    on_own_writes: true  # each event is a separate request here; loops are not under test
    actions:
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Seen {{ request.id }}: {{ request.subject }}"
"""


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample (labels given must all match; 0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _web(d: Deployment) -> tuple[subprocess.Popen[bytes], str]:
    """`deskwire web --workers 2` (gunicorn) on the deployment's database and Redis."""
    port = free_port()
    log = (Path(d.env["DESKWIRE_VAR_DIR"]) / "web.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "deskwire", "web", "--port", str(port), "--workers", "2"],
        env=d.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, "deskwire web exited"
        try:
            return httpx.get(url + "/healthz", timeout=2).status_code in (200, 503)
        except httpx.TransportError:
            return False

    wait_until(answers, 60, "deskwire web answering")
    return process, url


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_metrics_count_every_process_and_logs_are_json(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(
        tmp_path, database_url, redis_url, rules=RULES, extra_env={"DESKWIRE_LOG_FORMAT": "json"}
    ) as d:
        web, url = _web(d)
        try:
            headers = {"X-Deskwire-Token": "e2e-token"}
            d.fake.fail_next = [(400, 4000)]
            for n in range(6):  # spread over both gunicorn workers (new connection each time)
                body = {
                    "event": "request.created",
                    "event_id": f"m-{n}",
                    "request": {"id": "77", "subject": "S"},
                }
                assert (
                    httpx.post(url + "/webhooks/sdp", json=body, headers=headers).status_code == 202
                )
            repeat = {
                "event": "request.created",
                "event_id": "m-1",
                "request": {"id": "77", "subject": "S"},
            }
            assert (
                httpx.post(url + "/webhooks/sdp", json=repeat, headers=headers).status_code == 200
            )
            assert httpx.post(url + "/webhooks/sdp", json=repeat).status_code == 401
            bad = httpx.post(url + "/webhooks/sdp", content=b"{", headers=headers)
            assert bad.status_code == 400
            for n in range(6):
                d.wait_for(f"m-{n}")

            # Any web process answers for all: scrape several times (both workers). Each
            # process writes its counts every half second (deskwire.metrics_store): wait
            # until every scrape has the last of them.
            def scrape_all() -> list[httpx.Response] | None:
                scrapes = [httpx.get(url + "/metrics", timeout=10) for _ in range(4)]
                least = {
                    name: min(_metric(s.text, name) for s in scrapes)
                    for name in (
                        "deskwire_webhooks_total",
                        "deskwire_step_duration_seconds_count",
                        "deskwire_event_duration_seconds_count",
                    )
                }
                return (
                    scrapes
                    if min(least.values()) >= 6 and least["deskwire_webhooks_total"] >= 9
                    else None
                )

            scrapes = wait_until(scrape_all, 10, "every count written to Redis")
        finally:
            _stop(web)
        d.stop_worker()
    for scrape in scrapes:
        assert scrape.status_code == 200
        assert scrape.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = scrape.text
        assert _metric(text, "deskwire_webhooks_total", outcome="accepted") == 6
        assert _metric(text, "deskwire_webhooks_total", outcome="duplicate") == 1
        assert _metric(text, "deskwire_webhooks_total", outcome="refused", code="401") == 1
        assert _metric(text, "deskwire_webhooks_total", outcome="refused", code="400") == 1
        assert _metric(text, "deskwire_dead_letters") == 1
        assert _metric(text, "deskwire_events", status="done") == 5
        assert _metric(text, "deskwire_queue_depth") == 0
        assert _metric(text, "deskwire_event_duration_seconds_count", outcome="done") == 5
        assert _metric(text, "deskwire_event_duration_seconds_count", outcome="failed") == 1
        assert (
            _metric(text, "deskwire_event_duration_seconds_bucket", outcome="done", le="+Inf") == 5
        )
        assert _metric(text, "deskwire_step_duration_seconds_count", action="sdp.add_note") == 6
        assert (
            _metric(text, "deskwire_step_failures_total", connection="sdp", http_status="400") == 1
        )
        assert _metric(text, "deskwire_token_refreshes_total", connection="sdp") >= 1
        assert "# TYPE deskwire_event_duration_seconds histogram" in text
    # JSON logs: every line of the worker's log is one JSON object; step lines carry ids.
    # Celery prints its shutdown notice itself (not through logging): the one exception.
    shutdown = re.compile(r"worker: (Warm|Cold) shutdown \(MainProcess\)")
    lines = [ln for ln in d.worker_log().splitlines() if ln.strip() and not shutdown.fullmatch(ln)]
    assert [line for line in lines if not line.startswith("{")] == []
    records = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    failed_step = [r for r in records if "step note (sdp.add_note)" in r["message"]]
    assert failed_step, records[-5:]
    assert failed_step[0]["rule"] == "acknowledge"
    assert failed_step[0]["step"] == "note"
    assert failed_step[0]["event"].isdigit()
    # A library's lines inside a step (httpx's request log) carry the ids as well.
    calls = [r for r in records if r["logger"] == "httpx" and "/notes" in r["message"]]
    assert calls
    assert all(r.get("event") and r.get("rule") == "acknowledge" for r in calls)
    assert all(r.get("step") == "note" for r in calls)
