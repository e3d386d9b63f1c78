"""Group commit: webhooks that arrive together are stored in one transaction.

An event is durable once its transaction commits, and on a real disk each commit waits for
an fsync (milliseconds on a busy disk): one commit per webhook caps a process at a few
hundred webhooks a second whatever the CPU. With threaded web workers, the first request
thread that finds no commit in progress becomes the *leader*: it takes every event waiting
at that moment (its own included) and stores them with one commit
(:func:`deskwire.event_store.accept_events`); threads that arrive meanwhile wait and form
the next batch. No request is answered before its own event is committed, so "stored
before the 202" holds exactly as with one commit per request; a lone request pays nothing
extra (it leads a batch of one at once).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from deskwire.database import engine_of
from deskwire.event_store import Accepted, NewEvent, accept_events
from deskwire.sqlite_writers import writer_turn

MAX_BATCH = 64  # events per transaction, so one commit stays short


@dataclass
class _Waiting:
    item: NewEvent
    done: bool = False
    result: Accepted | None = None
    error: Exception | None = None


class GroupCommit:
    """Stores events for the request threads of one process, batching concurrent ones."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._writers = writer_turn(engine_of(sessions))  # SQLite: take turns, no naps
        self._cond = threading.Condition()
        self._queue: list[_Waiting] = []
        self._leading = False

    def accept(self, item: NewEvent) -> Accepted:
        """Store ``item`` (or find it a duplicate); returns once it is committed."""
        mine = _Waiting(item)
        with self._cond:
            self._queue.append(mine)
        while True:
            with self._cond:
                while not mine.done and self._leading:
                    self._cond.wait(timeout=1.0)
                if mine.done:
                    break
                # Nobody is committing: lead the next batch (this event is in it, unless
                # more than a batch was already waiting; then the loop leads again).
                self._leading = True
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                self._write(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        assert mine.result is not None
        return mine.result

    def _write(self, batch: list[_Waiting]) -> None:
        try:
            with self._writers.turn():
                results = accept_events(self._sessions, [waiting.item for waiting in batch])
        except Exception as exc:  # noqa: BLE001 - each waiter raises it in its own request
            for waiting in batch:
                waiting.error, waiting.done = exc, True
            return
        for waiting, result in zip(batch, results, strict=True):
            waiting.result, waiting.done = result, True
