"""Workers outlive broker outages, exit non-zero when they stop on their own, are restarted
by ``deskwire serve``, and health tells the truth about them (issue 16)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from deskwire.compose import web_app
from deskwire.embedded import free_port
from deskwire.settings import Settings
from tests.integration import ROOT, TOKEN, deployment
from tests.test_recovery import NOTE_RULE, event, own_redis
from tests.waiting import wait_until
from tests.wsgi_server import serving
from worker.celery_app import create_celery

pytestmark = pytest.mark.integration

CELERY_DEFAULT_MAX_RETRIES = 100  # broker_connection_max_retries when left alone


def reconnect_attempts(log: str) -> int:
    found = [int(n) for n in re.findall(r"unreachable .*?; attempt (\d+),", log)]
    return max(found, default=0)


def test_worker_outlives_an_outage_longer_than_celerys_retry_budget(
    tmp_path: Path, database_url: str
) -> None:
    # A short backoff ceiling makes Celery's default budget (100 tries) pass in seconds.
    with (
        own_redis(tmp_path, persistent=True) as server,
        deployment(
            tmp_path, database_url, server.url, rules=NOTE_RULE,
            extra_env={"DESKWIRE_BROKER_RECONNECT_MAX": "0.1"},
        ) as d,
    ):  # fmt: skip
        d.post(event(d, "before", "1"))
        assert d.wait_for("before").status == "done"
        assert server.process is not None
        server.process.terminate()
        server.process.wait(timeout=30)
        assert d.post(event(d, "during", "2")).status_code == 202  # stored while Redis is down
        wait_until(
            lambda: reconnect_attempts(d.worker_log()) > CELERY_DEFAULT_MAX_RETRIES + 20,
            120,
            "more reconnection attempts than Celery's default limit",
        )
        assert d.worker is not None
        assert d.worker.poll() is None  # still there
        server.start()
        assert d.post(event(d, "after", "3")).status_code == 202
        for event_id in ("during", "after"):
            assert d.wait_for(event_id, timeout=80).status == "done"
        assert "reachable again" in d.worker_log()


def test_worker_exit_codes(tmp_path: Path, database_url: str, redis_url: str) -> None:
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE) as d:
        assert d.worker is not None
        wait_until(lambda: " ready." in d.worker_log(), 60, "the worker to be ready")
        # Stopped by something other than an operator's signal: non-zero, so it is restarted.
        # (A broadcast reaches only a worker already listening: repeat it until it lands.)
        control = create_celery(d.settings, redis_url)
        worker = d.worker

        def shut_down() -> bool:
            if worker.poll() is None:
                control.control.shutdown()
            return worker.poll() is not None

        wait_until(shut_down, 60, "the worker stopping on a broadcast shutdown", interval=1)
        assert d.worker.wait(timeout=60) != 0
        assert "stopped without being asked to" in d.worker_log()
        # Stopped by an operator: 0.
        d.start_worker()
        wait_until(lambda: d.worker_log().count(" ready.") >= 2, 60, "the second worker")
        d.worker.send_signal(signal.SIGTERM)
        assert d.worker.wait(timeout=60) == 0


def test_health_tells_when_no_worker_runs_and_the_queue_is_stuck(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    # The worker beats every second when it knows the limit is 3 s.
    stale = {"DESKWIRE_WORKER_STALE_AFTER": "3"}
    with deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE, extra_env=stale) as d:
        settings = Settings(
            broker_url=redis_url,
            database_url=database_url,
            webhook_tokens=TOKEN,
            var_dir=tmp_path / "var",
            worker_stale_after=3,
            queue_max_age=3,
        )
        with serving(web_app(settings)) as web:

            def health() -> httpx.Response:
                return httpx.get(web + "/healthz", timeout=10)

            wait_until(lambda: health().status_code == 200, 60, "a healthy deskwire")
            assert health().json()["checks"]["workers"].startswith("ok; last heartbeat")
            assert "deskwire_worker_up 1" in httpx.get(web + "/metrics").text
            assert d.worker is not None
            os.killpg(d.worker.pid, signal.SIGKILL)  # no goodbye: the heartbeat just stops
            d.worker.wait(timeout=30)
            d.worker = None
            httpx.post(
                web + "/webhooks/sdp", json=event(d, "nobody", "9"),
                headers={"X-Deskwire-Token": TOKEN},
            )  # fmt: skip
            wait_until(lambda: health().status_code == 503, 30, "/healthz to report it")
            wait_until(
                lambda: health().json()["checks"]["queue"].startswith("stuck"), 30, "a stuck queue"
            )
            checks = health().json()["checks"]
            assert checks["workers"].startswith("down: no worker seen for")
            assert checks["database"] == "ok"
            assert checks["broker"] == "ok"
            ready = httpx.get(web + "/readyz", timeout=10)
            assert ready.status_code == 200  # webhooks are still accepted and stored
            assert ready.json()["status"] == "degraded"
            doctor = subprocess.run(
                [sys.executable, "-m", "deskwire", "doctor"],
                env=d.env | {"DESKWIRE_QUEUE_MAX_AGE": "3"},
                cwd=ROOT, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert doctor.returncode == 1
            assert "fail  workers      no worker seen for" in doctor.stdout
            assert "fail  queue        the oldest due event has waited" in doctor.stdout
            metrics = httpx.get(web + "/metrics").text
            assert "deskwire_worker_up 0" in metrics
            found = re.search(r"^deskwire_oldest_queued_event_age_seconds (\S+)$", metrics, re.M)
            assert found is not None
            age = float(found[1])
            assert age > 3
            d.start_worker()
            assert d.wait_for("nobody", timeout=60).status == "done"
            wait_until(lambda: health().status_code == 200, 60, "health to recover")
            d.stop_worker()  # a worker stopped on purpose leaves at once
            assert health().json()["checks"]["workers"].startswith("down: no worker has been seen")


def test_serve_restarts_a_dead_worker_and_says_so(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    port = free_port()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "log.yml").write_text(
        "rules:\n  - id: log-all\n    on: ['*']\n    actions:\n"
        "      - uses: log\n        with: {message: 'got {{ event.type }}'}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKWIRE_")}
    env |= {
        "DESKWIRE_VAR_DIR": str(tmp_path / "var"),
        "DESKWIRE_DATABASE_URL": database_url,
        "DESKWIRE_BROKER_URL": redis_url,
        "DESKWIRE_RULES_DIR": str(tmp_path / "rules"),
        "DESKWIRE_CONNECTIONS_FILE": str(tmp_path / "connections.yml"),
        "DESKWIRE_WEBHOOK_TOKENS": TOKEN,
        "DESKWIRE_WORKER_STALE_AFTER": "5",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "deskwire", "serve", "--port", str(port), "--no-flower",
             "--concurrency", "1"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, log_path.read_text()[-6000:]
        try:
            return httpx.get(base + "/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, 90, "serve to be healthy")
        workers = [
            p for p in psutil.Process(process.pid).children()
            if "worker" in p.cmdline()
        ]  # fmt: skip
        assert len(workers) == 1
        tree = [workers[0], *workers[0].children(recursive=True)]
        for part in tree:
            part.kill()
        wait_until(lambda: "worker exited with code" in log_path.read_text(), 30, "the exit log")
        wait_until(lambda: "worker restarted" in log_path.read_text(), 30, "the restart log")
        wait_until(healthy, 90, "serve to be healthy again")
        body = {
            "event": "request.created",
            "event_id": "after-1",
            "request": {"id": "1", "subject": "s"},
        }
        reply = httpx.post(base + "/webhooks/sdp", json=body, headers={"X-Deskwire-Token": TOKEN})
        assert reply.status_code == 202
        try:
            wait_until(lambda: "got request.created" in log_path.read_text(), 60, "the event's run")
        except AssertionError:
            raise AssertionError(log_path.read_text()[-8000:]) from None
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0
