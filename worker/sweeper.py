"""A worker bootstep that dispatches events the broker never got, or whose worker died.

Ingest stores every event before replying, even when Redis is down; this sweeper sends
those later. Events stuck in ``running`` past the hard time limit (a killed worker whose
message Redis has not redelivered yet) are put back too. A Redis lock keeps it to one
sweeper at a time across all workers.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import timedelta
from typing import Any, ClassVar

import redis
from celery import bootsteps
from redis.exceptions import LockError
from sqlalchemy.orm import Session, sessionmaker

from deskwire import event_store
from deskwire.run_history import purge_finished
from deskwire.settings import Settings
from deskwire.tables import utcnow
from worker.enqueue import EnqueueError, send_process_event

log = logging.getLogger(__name__)

UNDISPATCHED_GRACE = 5  # seconds: ingest marks dispatch right after storing
BATCH = 200  # events per sweep, so one sweep stays well inside its lock


def sweep(app: Any, sessions: sessionmaker[Session], settings: Settings) -> int:
    """Dispatch stranded events once; returns how many were sent."""
    now = utcnow()
    window = {
        "older_than": now - timedelta(seconds=UNDISPATCHED_GRACE),
        "stale_before": now - timedelta(seconds=settings.task_time_limit + 30),
        # A backstop: no queued task can legitimately wait longer than a redelivery plus
        # the longest backoff; past that its message was lost.
        "lost_before": now
        - timedelta(seconds=settings.broker_visibility_timeout + settings.retry_backoff_max + 60),
    }
    sent = 0
    for pk in event_store.needing_dispatch(sessions, limit=BATCH, **window):
        taken = event_store.take_for_dispatch(sessions, pk, **window)
        if taken is None:
            continue  # claimed or dispatched by someone else meanwhile
        event_type, request_id = taken
        try:
            send_process_event(app, pk, event_type=event_type, request_id=request_id)
        except EnqueueError as exc:
            event_store.clear_dispatched(sessions, pk)
            log.warning("sweeper: broker still unavailable (%s)", exc)
            break
        sent += 1
    if sent:
        log.info("sweeper dispatched %s stranded event(s)", sent)
    event_store.purge_expired_keys(sessions)
    if settings.purge_after:  # retention: a bounded batch per sweep keeps each run short
        cutoff = now - timedelta(seconds=settings.purge_after)
        if purged := purge_finished(sessions, older_than=cutoff, limit=BATCH):
            log.info("sweeper purged %s finished event(s) older than the retention", purged)
    return sent


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
        client = redis.Redis.from_url(app.conf.broker_url)

        def run() -> None:
            lock = client.lock(
                "deskwire:sweeper", timeout=max(120, settings.sweep_interval * 4), blocking=False
            )
            try:
                if not lock.acquire():
                    return
            except redis.RedisError as exc:
                log.warning("sweeper: Redis unavailable (%s)", exc)
                return
            try:
                sweep(app, sessions, settings)
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
