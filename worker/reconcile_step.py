"""A worker bootstep that runs reconciliation every ``DESKWIRE_RECONCILE_INTERVAL``.

Like the sweeper it lives in the worker's main process and a Redis lock keeps it to one
runner across all workers; unlike the sweeper its runs call SDP and may take a while,
so each run goes on a thread of its own and the timer (which also drives the sweeper
and the heartbeat) is never held up. A 429 from SDP pauses the source, for every
worker, for as long as its ``Retry-After`` says (a key in Redis with that lifetime).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any, ClassVar, Protocol

import redis
from celery import bootsteps
from redis.exceptions import LockError
from sqlalchemy.orm import Session, sessionmaker

from connections.errors import ConnectionsError
from deskwire.metrics_store import MetricsStore
from deskwire.settings import Settings
from sdp import SdpClient
from worker.enqueue import send_process_event
from worker.reconciler import Bounds, Dispatch, RunResult, reconcile_source

log = logging.getLogger(__name__)

LOCK = "deskwire:reconcile"
PAUSE = "deskwire:reconcile:pause:"  # + source: SDP asked to wait (Retry-After)


class SdpAccess(Protocol):
    """The SDP connections reconciliation reads through (``ConnectionClients``)."""

    def sdp(self, link: str | None, *, source: str) -> tuple[SdpClient, str]:
        """The SDP client a source's webhooks use, and its connection's link name."""

    def sdp_links(self) -> list[str]:
        """Link names of every SDP connection (Cloud or on-premises)."""


def sources_of(settings: Settings, access: SdpAccess) -> list[str]:
    """The sources to reconcile: the listed ones, else every SDP connection's link name."""
    return list(settings.reconcile_sources) or access.sdp_links()


def run_once(
    settings: Settings,
    sessions: sessionmaker[Session],
    access: SdpAccess,
    dispatch: Dispatch,
    client: redis.Redis,
    *,
    keep_alive: Callable[[], None] = lambda: None,
) -> list[RunResult]:
    """One run of every source not paused by a 429; their results."""
    results: list[RunResult] = []
    metrics = MetricsStore(client)
    for source in sources_of(settings, access):
        if client.exists(PAUSE + source):
            log.info("reconciliation of %s waits: SDP asked to slow down", source)
            continue
        try:
            sdp, link = access.sdp(None, source=source)
        except ConnectionsError as exc:  # not connected yet, no such connection: says which
            log.error("reconciliation of %s: %s", source, exc)
            continue
        with sdp:
            result = reconcile_source(
                sdp, sessions, dispatch, source=source, connection=link,
                bounds=Bounds.of(settings), keep_alive=keep_alive,
            )  # fmt: skip
        results.append(result)
        metrics.count("reconcile_calls", {"source": source}, result.calls)
        if result.created:
            metrics.count("reconciled_events", {"source": source}, result.created)
        if result.error is not None:
            metrics.count("reconcile_errors", {"source": source})
            if result.retry_after is not None:
                client.set(PAUSE + source, "1", ex=max(1, round(result.retry_after)))
            log.warning(
                "reconciliation of %s stopped after %s call(s): %s", source, result.calls,
                result.error,
            )  # fmt: skip
        log.info(
            "reconciliation of %s: %s call(s), %s changed request(s) read, %s event(s) "
            "made%s", source, result.calls, result.read, result.created,
            "" if result.complete else "; more to read next time",
        )  # fmt: skip
    return results


def locked_run(
    settings: Settings,
    sessions: sessionmaker[Session],
    access: SdpAccess,
    dispatch: Dispatch,
    client: redis.Redis,
) -> list[RunResult] | None:
    """:func:`run_once` under the Redis lock; ``None`` when another run holds it."""
    # Renewed after every SDP call, so it outlives a long run but not a dead worker.
    lock = client.lock(LOCK, timeout=max(60, settings.http_timeout * 3), blocking=False)
    try:
        if not lock.acquire():
            return None
    except redis.RedisError as exc:
        log.warning("reconciliation: Redis unavailable (%s)", exc)
        return None

    def keep_alive() -> None:
        with suppress(LockError, redis.RedisError):  # lost: the run is short of its end anyway
            lock.reacquire()

    try:
        return run_once(settings, sessions, access, dispatch, client, keep_alive=keep_alive)
    finally:
        with suppress(LockError, redis.RedisError):
            lock.release()


class Reconciler(bootsteps.StartStopStep):  # type: ignore[misc]
    """Starts a reconciliation run every ``reconcile_interval`` seconds (when set)."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Timer"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_ref: Any = None
        self._running: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        """Schedule runs on the worker's timer (nothing when reconciliation is off)."""
        app = parent.app
        settings: Settings = app.conf.deskwire_settings
        if not settings.reconcile_interval:
            return
        sessions: sessionmaker[Session] = app.conf.deskwire_sessions
        make_access: Callable[[], SdpAccess] = app.conf.deskwire_sdp_access
        client = redis.Redis.from_url(
            app.conf.broker_url, socket_timeout=10, socket_connect_timeout=5
        )
        access: list[SdpAccess] = []  # built on the first run, in this process

        def dispatch(pk: int, event_type: str, request_id: str) -> None:
            send_process_event(app, pk, event_type=event_type, request_id=request_id)

        def run() -> None:
            try:
                if not access:
                    access.append(make_access())
                locked_run(settings, sessions, access[0], dispatch, client)
            except Exception:
                log.exception("reconciliation run failed; trying again next interval")

        def start_run() -> None:
            if self._running is not None and self._running.is_alive():
                return  # the last run is still going
            self._running = threading.Thread(target=run, name="reconcile", daemon=True)
            self._running.start()

        log.info(
            "reconciliation every %ss (look-back %ss, delay %ss)", settings.reconcile_interval,
            settings.reconcile_lookback, settings.reconcile_delay,
        )  # fmt: skip
        # The first run soon after start-up (a restart resumes at the stored watermark).
        self.timer_ref = parent.timer.call_repeatedly(
            settings.reconcile_interval, start_run, priority=10
        )
        parent.timer.call_after(1.0, start_run, priority=10)

    def stop(self, parent: Any) -> None:
        """Cancel the timer; a run under way ends at its next SDP call at the latest."""
        if self.timer_ref is not None:
            self.timer_ref.cancel()
