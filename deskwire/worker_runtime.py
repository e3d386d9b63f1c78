"""The worker process: the Celery app with its task, sweeper and heartbeat, and how it runs.

Its parts come from the composition root: :func:`deskwire.compose.celery_app`, and
:func:`deskwire.compose.build_runtime` once in each worker process (after the fork).
"""

from __future__ import annotations

import logging
import os
import threading
from functools import partial
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutting_down

from deskwire.compose import build_runtime, celery_app, database_engine, sdp_access
from deskwire.database import session_factory
from deskwire.metrics_store import flush_pending
from deskwire.schema import require_current
from deskwire.settings import Settings
from worker.celery_app import QUEUE
from worker.heartbeat import Heartbeat
from worker.processing import Runtime
from worker.reconcile_step import Reconciler
from worker.sweeper import Sweeper
from worker.tasks import register_tasks

log = logging.getLogger(__name__)


class _PerProcess:
    """Builds the runtime once per process (after the fork), never in the parent."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._runtime: Runtime | None = None

    def __call__(self) -> Runtime:
        with self._lock:
            if self._runtime is None or self._pid != os.getpid():
                self._runtime = build_runtime(self._settings)
                self._pid = os.getpid()
            return self._runtime


def build_worker_app(settings: Settings) -> Celery:
    """The Celery app of a worker: task registered, sweeper added, schema checked."""
    app = celery_app(settings)  # raises BrokerNotSetError first
    engine = database_engine(settings)
    require_current(engine)  # raises SchemaError saying what to run
    app.conf.deskwire_settings = settings
    app.conf.deskwire_sessions = session_factory(engine)
    app.steps["worker"].add(Sweeper)
    app.steps["worker"].add(Heartbeat)
    app.steps["worker"].add(Reconciler)
    app.conf.deskwire_sdp_access = partial(sdp_access, settings, app.conf.deskwire_sessions)
    engine.dispose()  # the sweeper reconnects lazily; no connection crosses the fork
    register_tasks(app, _PerProcess(settings))
    # Pool children end without exit handlers: their last buffered metrics are written here.
    worker_process_shutdown.connect(_flush_metrics, weak=False)
    return app


def _flush_metrics(**_: Any) -> None:
    flush_pending()


def run_worker(app: Celery, settings: Settings, *, concurrency: int, name: str) -> int:
    """Run a worker until it stops; the exit code a supervisor should see.

    0 only when an operator asked it to stop (SIGTERM, SIGINT, SIGQUIT). Any other end
    (an unrecoverable error, a remote shutdown) is non-zero even when Celery says 0, so
    ``deskwire serve``, systemd's ``Restart=on-failure`` and the compose file restart it.
    """
    asked: list[str] = []

    def on_shutting_down(sig: Any = None, **_: Any) -> None:
        asked.append(str(sig))

    worker_shutting_down.connect(on_shutting_down, weak=False)
    try:
        code = app.start(
            [
                # JSON logs: no start-up banner on stdout, so every line is a JSON object.
                *(["--quiet"] if settings.log_format == "json" else []),
                "worker",
                f"--loglevel={settings.log_level}",
                f"--concurrency={concurrency}",
                f"--hostname={name}",
                f"--queues={QUEUE}",
                # Event heartbeats stay on: without them Flower shows live workers as offline.
            ]
        )
    finally:
        worker_shutting_down.disconnect(on_shutting_down)
    # Celery may end with a message instead of a number (a remote shutdown does).
    code = code if isinstance(code, int) else (1 if code else 0)
    if asked:
        return code
    log.error("the worker stopped without being asked to (exit code %s); exiting with 1", code)
    return code or 1
