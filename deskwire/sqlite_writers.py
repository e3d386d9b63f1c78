"""One writer at a time on a SQLite file across processes, handed over without a nap.

SQLite lets one connection write at a time. A writer that finds the file locked is put to
sleep by SQLite's busy handler for 1, 2, 5, 10 … 100 ms between tries, however soon the
lock is freed: under steady ingest the two web processes kept waking up late, and a
webhook waited up to half a second (p99 561 ms against 32 ms on PostgreSQL, bench at
14:00 UTC on 2026-11-29). The hot writers of ingest (the group commit and the dispatch
marks) first take an advisory ``flock`` on ``<database>.writers``, polled every half
millisecond, so the next writer starts as soon as the previous one committed. Other
writers are not changed: SQLite's own lock still decides, as before.

The lock is advisory and only orders writers: nothing is written under it that was not
written before, and if it cannot be taken within :data:`WAIT` seconds the write goes ahead
without it (SQLite's busy timeout applies as before).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine

log = logging.getLogger(__name__)

WAIT = 30.0  # seconds, as SQLite's busy timeout (deskwire.database)
POLL = 0.0005


class WriterTurn:
    """Takes turns with the other writers of one SQLite file (one instance per thread role)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._fd: int | None = None
        self._pid: int | None = None

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the writers' lock while the body writes (no-op for other databases)."""
        fd = self._file()
        if fd is None:
            yield
            return
        held = _take(fd)
        try:
            yield
        finally:
            if held:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _file(self) -> int | None:
        if self._path is None:
            return None
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                log.debug(
                    "no writers' lock at %s (%s): SQLite's busy handler only", self._path, exc
                )
                self._path = None
                return None
            self._pid = os.getpid()
        return self._fd


def _take(fd: int) -> bool:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                log.warning("the SQLite writers' lock was held for %.0f s; writing anyway", WAIT)
                return False
            time.sleep(POLL)


def writer_turn(engine: Engine) -> WriterTurn:
    """A :class:`WriterTurn` for ``engine``'s database: a file SQLite database, or none."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return WriterTurn(None)
    return WriterTurn(Path(f"{url.database}.writers"))
