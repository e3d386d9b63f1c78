"""What monitors (Flower) see of the process-event task: a dead-lettered event is a FAILURE.

Flower builds its task list from Celery's task events; this test listens to the same events
on the real broker (as Flower does) while a real worker processes one event that succeeds
and one that is dead-lettered.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery.events.receiver import EventReceiver

from deskwire.settings import Settings
from tests.integration import ROOT, Deployment, deployment
from tests.waiting import wait_until
from worker.celery_app import create_celery

pytestmark = pytest.mark.integration

NOTE_RULE = """\
rules:
  - id: acknowledge
    on: [request.created]
    actions:
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Seen"
"""


class _Listener(EventReceiver):  # type: ignore[misc]
    """Celery's event receiver, saying when it is subscribed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ready = threading.Event()

    def on_consume_ready(self, *args: Any, **kwargs: Any) -> None:
        super().on_consume_ready(*args, **kwargs)
        self.ready.set()


FLOWER_AUTH = ("ops", "flower-test-password")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _flower(d: Deployment) -> Iterator[str]:
    """A real ``deskwire flower`` with a sign-in, on loopback; yields its URL."""
    port = _free_port()
    env = {**d.env, "DESKWIRE_FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH)}
    log = (Path(d.env["DESKWIRE_VAR_DIR"]) / "flower.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "deskwire", "flower", "--port", str(port)],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            assert process.poll() is None, "flower exited"
            try:
                return httpx.get(url + "/", timeout=2).status_code > 0
            except httpx.TransportError:
                return False

        wait_until(answers, 60, "Flower to answer")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_a_dead_lettered_event_ends_its_task_in_failure(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    app = create_celery(Settings(broker_url=redis_url), redis_url)
    seen: list[dict[str, Any]] = []
    with (
        deployment(tmp_path, database_url, redis_url, rules=NOTE_RULE, start_worker=False) as d,
        app.connection_for_read() as connection,
        _flower(d) as flower,
    ):
        # Flower asks for its sign-in, for the pages and the API alike.
        for path in ("/", "/api/tasks"):
            assert httpx.get(flower + path, timeout=10).status_code == 401
            assert httpx.get(flower + path, auth=("ops", "wrong"), timeout=10).status_code == 401
        listener = _Listener(connection, handlers={"*": seen.append}, app=app)
        thread = threading.Thread(target=listener.capture, kwargs={"wakeup": False}, daemon=True)
        thread.start()
        try:
            assert listener.ready.wait(30), "the event receiver did not subscribe"
            d.start_worker()
            d.fake.fail_next = [(400, 4000)]  # a permanent SDP refusal: dead letter
            request = {"id": "901", "subject": "S"}
            d.post({"event": "request.created", "event_id": "bad-1", "request": request})
            failed = d.wait_for("bad-1")
            assert failed.status == "failed"
            d.post({"event": "request.created", "event_id": "ok-1", "request": request})
            assert d.wait_for("ok-1").status == "done"

            def outcome(kind: str, pk: int) -> dict[str, Any] | None:
                received = {
                    e["uuid"]
                    for e in seen
                    if e["type"] == "task-received" and e["args"] in (f"[{pk}]", f"({pk},)")
                }
                done = [e for e in seen if e["type"] == kind and e["uuid"] in received]
                return done[0] if done else None

            ok = d.event("ok-1")
            assert ok is not None
            task_failed = wait_until(lambda: outcome("task-failed", failed.id), 60, "task-failed")
            assert f"event {failed.id} is on the dead-letter list" in task_failed["exception"]
            assert "SDP add_note failed (HTTP 400)" in task_failed["exception"]
            wait_until(lambda: outcome("task-succeeded", ok.id), 60, "task-succeeded")
            failed_uuid = task_failed["uuid"]
            assert not [
                e for e in seen if e["type"] == "task-succeeded" and e["uuid"] == failed_uuid
            ]

            # The worker sends heartbeats, so Flower shows it online (not offline).
            wait_until(
                lambda: any(e["type"] == "worker-heartbeat" for e in seen), 60, "a heartbeat"
            )

            # What Flower's API says, with the sign-in.
            def flower_states() -> dict[str, str] | None:
                tasks = httpx.get(flower + "/api/tasks", auth=FLOWER_AUTH, timeout=10).json()
                states = {t["uuid"]: t["state"] for t in tasks.values()}
                return states if failed_uuid in states and len(states) >= 2 else None

            states = wait_until(flower_states, 60, "Flower to list both tasks")
            assert states[failed_uuid] == "FAILURE"
            assert sorted(states.values()) == ["FAILURE", "SUCCESS"]
            # The dead-lettered event's message was acknowledged: nothing redelivers it.
            d.stop_worker()
            assert d.event("bad-1").status == "failed"  # type: ignore[union-attr]
            # An expected failure: one log line, no traceback.
            assert "raised expected: EventDeadLettered" in d.worker_log()
            assert "Traceback" not in d.worker_log()
        finally:
            listener.should_stop = True
            thread.join(timeout=10)
