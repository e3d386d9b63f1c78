"""Recording that accepted events reached the broker, in batches off the request path.

The mark only tells the worker's sweeper "this event's task was published, do not send it
again". Writing it in its own transaction per webhook cost a fifth of every request, so
each web process collects the ids and marks them together every ``interval`` seconds from
a background thread. If the process dies before a flush, the sweeper sends those events
once more after its grace period; the worker's atomic claim makes the extra message
harmless (it finds the event claimed or finished and drops it), so nothing is lost and
nothing runs twice.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading

from sqlalchemy.orm import Session, sessionmaker

from deskwire.database import engine_of
from deskwire.event_store import mark_dispatched_many
from deskwire.sqlite_writers import writer_turn

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # ids per UPDATE, so one statement stays small


class DispatchMarks:
    """Collects dispatched event ids and writes them from one thread per process."""

    def __init__(self, sessions: sessionmaker[Session], interval: float = 0.5) -> None:
        self._sessions = sessions
        self._writers = writer_turn(engine_of(sessions))
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: list[int] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, pk: int) -> None:
        """Remember that ``pk``'s task was published; it is written within ``interval`` s."""
        with self._lock:
            self._pending.append(pk)
            if self._thread is None or self._pid != os.getpid():
                # Started lazily, in the process that serves requests (gunicorn forks).
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="deskwire-dispatch-marks", daemon=True
                )
                self._thread.start()
                atexit.register(self.flush)

    def flush(self) -> None:
        """Write every pending mark now."""
        with self._lock:
            pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_BATCH):
            batch = pending[start : start + MAX_BATCH]
            try:
                with self._writers.turn():
                    mark_dispatched_many(self._sessions, batch)
            except Exception as exc:  # noqa: BLE001 - the sweeper covers unmarked events
                log.warning("could not mark %s event(s) dispatched (%s)", len(batch), exc)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self.flush()
