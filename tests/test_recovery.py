"""Recovery in seconds (issue 10, point 1): real faults injected into real processes.

Each test kills something for real — the redis-server the test started (SIGTERM or
SIGKILL, with and without AOF), one worker child, or the whole worker process group,
while an event runs or while it waits out a retry backoff — and then waits, with the
bound that docs/reliability.md states, for every event to be processed exactly once and
for later events about the same request not to be held. Settings are the defaults that
matter for recovery (lease, grace, sweep interval), not shortened for the test.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from deskwire.embedded import EmbeddedRedis
from deskwire.tables import Event
from tests.integration import Deployment, deployment
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

# The bound of docs/reliability.md: every unfinished event is processed within 60 s of
# Redis and a worker both being back. The margin is for a loaded 2-core CI machine.
RECOVERY_BOUND = 60.0
MARGIN = 20.0

# Recovery-relevant settings at their defaults (the deployment helper shortens the sweep).
DEFAULTS = {"DESKWIRE_SWEEP_INTERVAL": "5", "DESKWIRE_BROKER_RECONNECT_MAX": "10"}

NOTE_RULE = """\
rules:
  - id: note
    on: ["request.*"]
    actions:
      - id: wait
        uses: http.get
        with: {url: "{{ payload.slow_url }}"}
      - id: note
        uses: sdp.add_note
        with: {request_id: "{{ request.id }}", description: "{{ event.id }}"}
"""


@contextmanager
def own_redis(tmp_path: Path, *, persistent: bool) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test alone, so the test may kill it."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def crash(server: EmbeddedRedis, sig: signal.Signals) -> None:
    assert server.process is not None
    server.process.send_signal(sig)
    server.process.wait(timeout=30)


def event(d: Deployment, event_id: str, request_id: str, kind: str = "created") -> dict:
    # An update changes the subject: a person's edit, not an echo of deskwire's own note.
    subject = "s" if kind == "created" else f"edited by a person ({event_id})"
    return {
        "event": f"request.{kind}",
        "event_id": event_id,
        "request": {"id": request_id, "subject": subject},
        "slow_url": d.fake_url + "/slow",
    }


def wait_all(d: Deployment, event_ids: list[str], since: float) -> float:
    """Wait until every event is done, within the bound from ``since``; the seconds taken."""
    deadline = since + RECOVERY_BOUND + MARGIN
    for event_id in event_ids:
        remaining = max(1.0, deadline - time.monotonic())
        found = d.wait_for(event_id, timeout=remaining)
        assert found.status == "done", (event_id, found.error)
    return time.monotonic() - since


def assert_each_noted_once(d: Deployment, event_ids: list[str]) -> None:
    counts = Counter(note["description"] for note in d.fake.notes)
    assert {event_id: counts[event_id] for event_id in event_ids} == dict.fromkeys(event_ids, 1)


def notes_of(d: Deployment, request_id: str) -> list[str]:
    return [n["description"] for n in d.fake.notes if n["request_id"] == request_id]


@pytest.mark.parametrize("persistent", [True, False], ids=["aof", "no-persistence"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_redis_restart_under_load_strands_no_event(
    tmp_path: Path, database_url: str, sig: signal.Signals, persistent: bool
) -> None:
    with (
        own_redis(tmp_path, persistent=persistent) as server,
        deployment(
            tmp_path, database_url, server.url, rules=NOTE_RULE, start_worker=False,
            extra_env=DEFAULTS,
        ) as d,
    ):  # fmt: skip
        d.start_worker(concurrency=2)
        d.fake.slow_seconds = 0.4
        ids: list[str] = []
        for n in range(10):
            ids.append(f"r{n}")
            assert d.post(event(d, f"r{n}", str(100 + n))).status_code == 202
        # Later events about requests whose first event is still in flight.
        for n in range(3):
            ids.append(f"u{n}")
            assert d.post(event(d, f"u{n}", str(100 + n), "updated")).status_code == 202
        d.wait_for("r0", timeout=60)  # work is under way: some done, some running, some queued
        crash(server, sig)
        # Webhooks keep arriving while Redis is down: stored, answered 202.
        for n in range(3):
            ids.append(f"d{n}")
            assert d.post(event(d, f"d{n}", str(200 + n))).status_code == 202
        time.sleep(2)  # the outage under test: Redis stays down for two seconds
        server.start()
        back = time.monotonic()
        took = wait_all(d, ids, back)
        print(f"\nredis {sig.name} persistent={persistent}: all done {took:.1f}s after restart")
        assert_each_noted_once(d, ids)
        for n in range(3):  # per request, in the order received
            assert notes_of(d, str(100 + n)) == [f"r{n}", f"u{n}"]
        assert d.worker is not None
        assert d.worker.poll() is None


def running_child(d: Deployment) -> psutil.Process:
    """The pool child that runs the slow step now."""
    assert d.worker is not None
    fake_port = int(d.fake_url.rsplit(":", 1)[1])
    worker = d.worker

    def calling() -> psutil.Process | None:
        for child in psutil.Process(worker.pid).children(recursive=True):
            try:
                if any(c.raddr and c.raddr.port == fake_port for c in child.net_connections()):
                    return child
            except psutil.Error:
                continue
        return None

    return wait_until(calling, 30, "a worker child calling the slow service")


def test_one_worker_child_killed_mid_event_is_recovered_and_holds_nothing(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(
        tmp_path, database_url, redis_url, rules=NOTE_RULE, start_worker=False, extra_env=DEFAULTS
    ) as d:
        d.start_worker(concurrency=2)
        d.fake.slow_seconds = 30
        d.post(event(d, "k1", "300"))
        d.post(event(d, "k2", "300", "updated"))  # must wait for k1, and not be held longer
        d.post(event(d, "k3", "301"))  # another request: not held at all
        assert d.fake.slow_started.wait(30), d.worker_log()
        running_child(d).kill()
        killed = time.monotonic()
        d.fake.slow_seconds = 0
        took = wait_all(d, ["k1", "k2", "k3"], killed)
        print(f"\nworker child SIGKILL: all done {took:.1f}s after the kill")
        assert notes_of(d, "300") == ["k1", "k2"]
        assert notes_of(d, "301") == ["k3"]


def kill_group(d: Deployment) -> None:
    assert d.worker is not None
    os.killpg(d.worker.pid, signal.SIGKILL)
    d.worker.wait(timeout=30)
    d.worker = None


def test_whole_worker_process_group_killed_mid_event(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(
        tmp_path, database_url, redis_url, rules=NOTE_RULE, start_worker=False, extra_env=DEFAULTS
    ) as d:
        d.start_worker(concurrency=2)
        d.fake.slow_seconds = 30
        d.post(event(d, "g1", "400"))
        d.post(event(d, "g2", "400", "updated"))
        d.post(event(d, "g3", "401"))
        assert d.fake.slow_started.wait(30), d.worker_log()
        # g3 (another request) in its slow step too: the worker has taken g2, queued before it.
        wait_until(lambda: d.fake.slow_calls >= 2, 30, "g3 reaching its slow step")
        kill_group(d)
        d.fake.slow_seconds = 0
        d.start_worker(concurrency=2)
        back = time.monotonic()
        took = wait_all(d, ["g1", "g2", "g3"], back)
        print(f"\nworker group SIGKILL: all done {took:.1f}s after a new worker started")
        assert notes_of(d, "400") == ["g1", "g2"]
        assert notes_of(d, "401") == ["g3"]


RETRY_RULE = """\
rules:
  - id: note
    on: ["request.*"]
    actions:
      - id: first
        uses: sdp.add_note
        with: {request_id: "{{ request.id }}", description: "first {{ event.id }}"}
      - id: second
        uses: sdp.add_note
        with: {request_id: "{{ request.id }}", description: "second {{ event.id }}"}
"""


def test_worker_killed_while_an_event_waits_out_its_retry_backoff(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with deployment(
        tmp_path, database_url, redis_url, rules=RETRY_RULE, start_worker=False,
        extra_env=DEFAULTS | {"DESKWIRE_RETRY_BACKOFF_MAX": "30"},
    ) as d:  # fmt: skip
        d.start_worker(concurrency=1)
        # The first note passes; the second is rate-limited with an 8 s Retry-After.
        d.fake.retry_after = "8"
        d.fake.fail_next = [None, (429, 4015)]
        d.post(
            {"event": "request.created", "event_id": "b1", "request": {"id": "500", "subject": "a"}}
        )
        d.post(
            {"event": "request.updated", "event_id": "b2", "request": {"id": "500", "subject": "b"}}
        )

        def waiting_for_retry() -> Event | None:
            found = d.event("b1")
            return found if found and found.attempts == 1 and found.status == "queued" else None

        waiting = wait_until(
            waiting_for_retry, 60, lambda: f"b1 waiting for a retry: {d.event('b1')}"
        )
        assert waiting.not_before is not None  # the wait is in the database
        kill_group(d)  # the countdown message dies with the worker that held it
        d.start_worker(concurrency=1)
        back = time.monotonic()
        took = wait_all(d, ["b1", "b2"], back)
        print(f"\nworker killed during a backoff: done {took:.1f}s after a new worker started")
        assert notes_of(d, "500") == ["first b1", "second b1", "first b2", "second b2"]
        assert d.event("b1").attempts == 2  # type: ignore[union-attr]


def test_an_event_running_longer_than_its_lease_is_not_run_twice(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    # A 3 s lease renewed every second, a sweep every second, a free second pool child:
    # only the renewals keep the sweeper from handing the event to that child.
    short = {"DESKWIRE_LEASE_SECONDS": "3", "DESKWIRE_SWEEP_INTERVAL": "1"}
    with deployment(
        tmp_path, database_url, redis_url, rules=NOTE_RULE, start_worker=False, extra_env=short
    ) as d:
        d.start_worker(concurrency=2)
        d.fake.slow_seconds = 8
        d.post(event(d, "long-1", "600"))
        assert d.wait_for("long-1", timeout=60).status == "done"
        assert d.fake.slow_calls == 1
        assert notes_of(d, "600") == ["long-1"]
        assert d.event("long-1").attempts == 1  # type: ignore[union-attr]
