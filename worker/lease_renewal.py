"""Keeping the leases of the events a worker process runs, with one thread per process.

A running event is leased to its delivery for ``lease_seconds``; while the run goes on
the lease is renewed every third of its length. If the process dies the renewals stop,
the lease lapses and the sweeper sends the event again. One thread renews every lease the
process holds (a prefork child runs one event at a time): starting and joining a thread
per event cost more than the renewal itself.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from deskwire import recovery_store

log = logging.getLogger(__name__)


class LeaseRenewer:
    """Renews the leases held by the runs of this process (see the module doc)."""

    def __init__(self, sessions: sessionmaker[Session], lease: float) -> None:
        self._sessions = sessions
        self._lease = lease
        self._held: dict[tuple[int, str], None] = {}  # (event pk, claimer), in claim order
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    @contextmanager
    def kept(self, event_pk: int, claimer: str) -> Iterator[None]:
        """Renew ``claimer``'s lease on the event while the block runs.

        Renewing before the claim is harmless: a renewal only touches a lease the claimer
        holds. The first renewal comes at most a third of a lease after entering.
        """
        key = (event_pk, claimer)
        with self._lock:
            self._held[key] = None
            self._start_if_needed()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(key, None)

    def _start_if_needed(self) -> None:
        # Threads do not survive a fork: a prefork child starts its own on first use.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._wake.wait(self._lease / 3):
            with self._lock:
                held = list(self._held)
            for event_pk, claimer in held:
                try:
                    recovery_store.renew_lease(
                        self._sessions, event_pk, claimer=claimer, lease=self._lease
                    )
                except Exception as exc:  # noqa: BLE001 - a database hiccup: next time
                    log.warning("event %s: could not renew its lease (%s)", event_pk, exc)
