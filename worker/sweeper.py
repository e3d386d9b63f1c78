"""A worker bootstep that dispatches events the broker never got, or whose worker died.

Ingest stores every event before replying, even when Redis is down; this sweeper sends
those later. Events stuck in ``running`` past the hard time limit (a killed worker whose
message Redis has not redelivered yet) are put back too. A Redis lock keeps it to one
sweeper at a time across all workers.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, ClassVar

import redis
from celery import bootsteps
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from deskwire import event_store
from deskwire.database import transaction
from deskwire.settings import Settings
from deskwire.tables import Event, EventStatus, utcnow
from worker.enqueue import EnqueueError, send_process_event

log = logging.getLogger(__name__)

UNDISPATCHED_GRACE = 5  # seconds: ingest marks dispatch right after storing


def sweep(app: Any, sessions: sessionmaker[Session], settings: Settings) -> int:
    """Dispatch stranded events once; returns how many were sent."""
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.task_time_limit + 30)
    # A backstop: no queued task can legitimately wait longer than a redelivery plus the
    # longest backoff; past that its message was lost.
    lost_after = settings.broker_visibility_timeout + settings.retry_backoff_max + 60
    pks = event_store.needing_dispatch(
        sessions,
        older_than=now - timedelta(seconds=UNDISPATCHED_GRACE),
        stale_before=stale_before,
        lost_before=now - timedelta(seconds=lost_after),
    )
    sent = 0
    for pk in pks:
        with transaction(sessions) as session:
            event = session.get(Event, pk)
            if event is None:
                continue
            if event.status == EventStatus.RUNNING:
                # The claim is stale: let the next delivery take it over.
                session.execute(
                    update(Event).where(Event.id == pk).values(status=EventStatus.QUEUED)
                )
            event_type, request_id = event.event_type, event.request_id
        try:
            send_process_event(app, pk, event_type=event_type, request_id=request_id)
        except EnqueueError as exc:
            log.warning("sweeper: broker still unavailable (%s)", exc)
            break
        event_store.mark_dispatched(sessions, pk)
        sent += 1
    if sent:
        log.info("sweeper dispatched %s stranded event(s)", sent)
    event_store.purge_expired_keys(sessions)
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
                "deskwire:sweeper", timeout=max(30, settings.sweep_interval * 2), blocking=False
            )
            if not lock.acquire():
                return
            try:
                sweep(app, sessions, settings)
            except Exception:
                log.exception("sweeper run failed; trying again next interval")
            finally:
                lock.release()

        self.timer_ref = parent.timer.call_repeatedly(settings.sweep_interval, run, priority=10)

    def stop(self, parent: Any) -> None:
        """Cancel the timer."""
        if self.timer_ref is not None:
            self.timer_ref.cancel()
