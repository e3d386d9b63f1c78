"""This process's ``Connections``, rebuilt when ``connections.yml`` changes.

Web processes and workers run for weeks; an edited connections file (a new connection,
an added scope) must reach all of them without a restart, like the rules do. A malformed
edit keeps the last good configuration and is logged. What a facade is made of is decided
by the composition root (:func:`deskwire.compose.live_connections`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from connections import Connections, ConnectionsConfigError

log = logging.getLogger(__name__)


def _fingerprint(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


class LiveConnections:
    """Call it for the current facade; the file is checked at most every ``interval`` s.

    ``build`` reads ``path`` and makes a facade of it; it raises
    :class:`~connections.ConnectionsConfigError` for a malformed file.
    """

    def __init__(self, path: Path, build: Callable[[], Connections], *, interval: float) -> None:
        self._path = path
        self._build = build
        self._interval = interval
        self._lock = threading.Lock()
        self._facade: Connections | None = None
        self._seen: tuple[int, int] | None = None
        self._checked_at = float("-inf")
        self._pid = os.getpid()

    def __call__(self) -> Connections:
        with self._lock:
            now = time.monotonic()
            forked = self._pid != os.getpid()
            if self._facade is None or forked or now - self._checked_at >= self._interval:
                self._checked_at = now
                self._pid = os.getpid()
                seen = _fingerprint(self._path)
                if self._facade is None or forked or seen != self._seen:
                    self._rebuild(seen)
            assert self._facade is not None
            return self._facade

    def _rebuild(self, seen: tuple[int, int] | None) -> None:
        try:
            facade = self._build()
        except ConnectionsConfigError as exc:
            if self._facade is None:
                raise
            log.error("%s is invalid; keeping the connections loaded before:\n%s", self._path, exc)
            self._seen = seen
            return
        if self._facade is not None:
            self._facade.close()
            log.info("reloaded connections from %s", self._path)
        self._facade = facade
        self._seen = seen
