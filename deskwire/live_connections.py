"""This process's ``Connections``, rebuilt when ``connections.yml`` changes.

Web processes and workers run for weeks; an edited connections file (a new connection,
an added scope) must reach all of them without a restart, like the rules do. A malformed
edit keeps the last good configuration and is logged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import redis
from sqlalchemy.orm import Session, sessionmaker

from connections import Connections, ConnectionsConfigError, load_config
from deskwire.settings import Settings

log = logging.getLogger(__name__)


def _fingerprint(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


class LiveConnections:
    """Call it for the current facade; the file is checked at most every ``interval`` s."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        client: redis.Redis,
        *,
        interval: float | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._redis = client
        self._interval = settings.reload_interval if interval is None else interval
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
                seen = _fingerprint(self._settings.connections_file)
                if self._facade is None or forked or seen != self._seen:
                    self._rebuild(seen)
            assert self._facade is not None
            return self._facade

    def _rebuild(self, seen: tuple[int, int] | None) -> None:
        path = self._settings.connections_file
        try:
            config = load_config(path, dict(os.environ))
        except ConnectionsConfigError as exc:
            if self._facade is None:
                raise
            log.error("%s is invalid; keeping the connections loaded before:\n%s", path, exc)
            self._seen = seen
            return
        if self._facade is not None:
            self._facade.close()
            log.info("reloaded connections from %s", path)
        self._facade = Connections(
            config,
            self._sessions,
            self._redis,
            [key.get_secret_value() for key in self._settings.secret_key],
            timeout=self._settings.http_timeout,
            public_url=self._settings.public_url,
        )
        self._seen = seen
