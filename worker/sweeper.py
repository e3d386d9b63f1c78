"""A worker bootstep that re-sends events whose message never reached the broker or was
lost, and events whose worker died, within seconds rather than after Redis's visibility
timeout.

Which events are stranded is the database's call (see :mod:`deskwire.recovery_store`);
for a queued event that looks overdue, the sweeper also looks in the broker queue: a
message still waiting there is a live delivery (a backlog, not a loss) and is left alone.
A Redis lock keeps it to one sweeper at a time across all workers.
"""

from __future__ import annotations

import json
import logging
from contextlib import suppress
from datetime import timedelta
from typing import Any, ClassVar

import redis
from celery import bootsteps
from redis.exceptions import LockError
from sqlalchemy.orm import Session, sessionmaker

from deskwire import event_store, recovery_store, wait_store
from deskwire.run_history import purge_finished
from deskwire.settings import Settings
from deskwire.tables import utcnow
from worker.celery_app import QUEUE
from worker.enqueue import EnqueueError, event_of_task, send_process_event

log = logging.getLogger(__name__)

BATCH = 1000  # events per sweep, so one sweep stays well inside its lock


def events_waiting_in_broker(client: redis.Redis) -> set[int]:
    """Events with a message in the broker queue (sent, not yet taken by any worker).

    kombu keeps a Redis queue as a list of JSON envelopes whose headers carry the task id;
    deskwire's task ids name their event.
    """
    waiting: set[int] = set()
    for raw in client.lrange(QUEUE, 0, -1):
        try:
            headers = json.loads(raw).get("headers") or {}
        except (ValueError, AttributeError):
            continue
        pk = event_of_task(str(headers.get("id", "")))
        if pk is not None:
            waiting.add(pk)
    return waiting


def sweep(
    app: Any, sessions: sessionmaker[Session], settings: Settings, client: redis.Redis
) -> int:
    """Re-send stranded events once; returns how many were sent."""
    window = recovery_store.windows(settings.redispatch_grace)
    candidates = recovery_store.stranded(sessions, window, limit=BATCH)
    # The queue is read only when something looks overdue. A message taken by a worker
    # meanwhile is harmless either way: its event is claimed (the take below sees it) or
    # about to be, and a second message for a claimed event does nothing.
    waiting = (
        events_waiting_in_broker(client)
        if any(kind == "overdue" for _, kind in candidates)
        else set()
    )
    sent = 0
    for pk, kind in candidates:
        if kind == "overdue" and pk in waiting:
            continue  # its message waits in the queue: a backlog, not a loss
        taken = recovery_store.take_for_dispatch(sessions, pk, window)
        if taken is None:
            continue  # claimed or dispatched by someone else meanwhile
        event_type, request_id = taken
        try:
            send_process_event(app, pk, event_type=event_type, request_id=request_id)
        except EnqueueError as exc:
            recovery_store.clear_dispatched(sessions, pk)
            log.warning("sweeper: broker still unavailable (%s)", exc)
            break
        log.info("sweeper: event %s was %s; sent it again", pk, kind.replace("_", " "))
        sent += 1
    if sent:
        log.info("sweeper dispatched %s stranded event(s)", sent)
    sent += fire_waits(app, sessions)
    event_store.purge_expired_keys(sessions)
    if settings.purge_after:  # retention: a bounded batch per sweep keeps each run short
        cutoff = utcnow() - timedelta(seconds=settings.purge_after)
        if purged := purge_finished(sessions, older_than=cutoff, limit=BATCH):
            log.info("sweeper purged %s finished event(s) older than the retention", purged)
    return sent


def fire_waits(app: Any, sessions: sessionmaker[Session]) -> int:
    """Fire the due waits (docs/rules.md, "Waiting"): queue their events again; how many.

    A wait is fired in the database before its message is sent; if the broker refuses, the
    event counts as never sent and a later sweep sends it, so a wait is never lost nor fired
    twice.
    """
    fired = wait_store.fire_due(sessions, limit=BATCH)
    for sent, wait in enumerate(fired):
        try:
            send_process_event(
                app, wait.event_pk, event_type=wait.event_type, request_id=wait.request_id
            )
        except EnqueueError as exc:
            log.warning("sweeper: broker unavailable (%s); fired waits are sent later", exc)
            for unsent in fired[sent:]:  # never sent: the next sweeps send them
                recovery_store.clear_dispatched(sessions, unsent.event_pk)
            return sent
        log.info("sweeper: wait %s fired; event %s queued again", wait.wait_id, wait.event_pk)
    return len(fired)


class Sweeper(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs :func:`sweep` every ``sweep_interval`` seconds in the worker's main process."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Timer"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_ref: Any = None

    def start(self, parent: Any) -> None:
        """Schedule the sweep on the worker's timer."""
        app = parent.app
        settings: Settings = app.conf.deskwire_settings
        sessions: sessionmaker[Session] = app.conf.deskwire_sessions
        client = redis.Redis.from_url(
            app.conf.broker_url, socket_timeout=10, socket_connect_timeout=5
        )

        def run() -> None:
            # Short enough that a worker killed while sweeping holds up no one for long.
            lock = client.lock(
                "deskwire:sweeper", timeout=max(20, settings.sweep_interval * 3), blocking=False
            )
            try:
                if not lock.acquire():
                    return
            except redis.RedisError as exc:
                log.warning("sweeper: Redis unavailable (%s)", exc)
                return
            try:
                sweep(app, sessions, settings, client)
            except Exception:
                log.exception("sweeper run failed; trying again next interval")
            finally:
                # The take-for-dispatch guard keeps an expired lock harmless.
                with suppress(LockError, redis.RedisError):
                    lock.release()

        self.timer_ref = parent.timer.call_repeatedly(settings.sweep_interval, run, priority=10)

    def stop(self, parent: Any) -> None:
        """Cancel the timer."""
        if self.timer_ref is not None:
            self.timer_ref.cancel()
