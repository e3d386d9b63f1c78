"""Group commit: webhooks that arrive together are stored in one transaction, and their
tasks published with one broker command.

An event is durable once its transaction commits, and on a real disk each commit waits for
an fsync (milliseconds on a busy disk): one commit per webhook caps a process at a few
hundred webhooks a second whatever the CPU. With threaded web workers, the first request
thread that finds no commit in progress becomes the *leader*: it takes every event waiting
at that moment (its own included) and stores them with one commit
(:func:`deskwire.event_store.accept_events`); threads that arrive meanwhile wait and form
the next batch. No request is answered before its own event is committed, so "stored
before the 202" holds exactly as with one commit per request; a lone request pays nothing
extra (it leads a batch of one at once).

After the commit the leader publishes the batch's new events (duplicates are not
published) with one call of ``publish``: the web's is one Redis LPUSH for the whole group
(worker/enqueue.py ``Enqueuer.enqueue_many``); an LPUSH per webhook (redis-py packing it,
the round trip, parsing the reply) was ~13% of the web process's CPU (py-spy under wrk,
issue 9). The leader hands over before publishing, so the next group commits meanwhile.
Each request still returns only after its own event's publish was tried: its task is in
the broker, or :attr:`Stored.publish_error` says why not (the event stays stored, and the
worker's sweeper dispatches it later).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from deskwire.database import engine_of
from deskwire.event_store import Accepted, NewEvent, accept_events
from deskwire.sqlite_writers import writer_turn

MAX_BATCH = 64  # events per transaction, so one commit stays short
_INTERRUPTED = "the request thread leading this event's group stopped (e.g. interrupted)"

# Publishes the tasks of new events, in order; raises when the broker did not take them.
Publish = Callable[[Sequence[tuple[NewEvent, Accepted]]], None]


@dataclass(frozen=True)
class Stored:
    """An event as stored (or found a duplicate) and, if new, whether its task went out."""

    accepted: Accepted
    # Why a new event's task was not published (None: it was, or the event is a duplicate).
    publish_error: Exception | None = None


@dataclass(eq=False)
class _Waiting:
    item: NewEvent
    # Set once: when a leader finished this event (``done``), or to make this thread the
    # next leader (the first in the queue when the leader hands over).
    wake: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    result: Accepted | None = None
    error: Exception | None = None
    publish_error: Exception | None = None


class GroupCommit:
    """Stores events for the request threads of one process, batching concurrent ones, and
    publishes each batch's new events together."""

    def __init__(self, sessions: sessionmaker[Session], publish: Publish) -> None:
        self._sessions = sessions
        self._publish = publish
        self._writers = writer_turn(engine_of(sessions))  # SQLite: take turns, no naps
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        # A thread is storing a batch, or about to take one: while it is, the waiting
        # events stay in the queue (the queue is never left non-empty without a leader).
        self._leading = False

    def accept(self, item: NewEvent) -> Stored:
        """Store ``item`` (or find it a duplicate) and publish it if new; returns once it is
        committed and its publish was tried. Raises what storing it raised."""
        mine = _Waiting(item)
        with self._lock:
            self._queue.append(mine)
            waits = self._leading
            self._leading = True
        if waits:
            # Each waiter is woken alone (a notify_all per commit woke every request thread
            # of the process to find most had nothing to do: 3% of its CPU under load).
            mine.wake.wait()
        if not mine.done:
            # Leading: this event is the first waiting (nobody else takes batches), so it
            # is in the batch.
            with self._lock:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._lead(batch)
        if mine.error is not None:
            raise mine.error
        assert mine.result is not None
        return Stored(mine.result, mine.publish_error)

    def _lead(self, batch: list[_Waiting]) -> None:
        try:
            try:
                self._write(batch)
            finally:
                self._hand_over()  # the next group commits while this one publishes
            self._publish_new(batch)
        finally:
            for waiting in batch:
                if waiting.result is None and waiting.error is None:
                    waiting.error = RuntimeError(_INTERRUPTED)
                waiting.done = True
                waiting.wake.set()

    def _hand_over(self) -> None:
        """Make the first waiting event's thread the next leader, or stop leading."""
        with self._lock:
            if self._queue:
                self._queue[0].wake.set()
            else:
                self._leading = False

    def _write(self, batch: list[_Waiting]) -> None:
        try:
            with self._writers.turn():
                results = accept_events(self._sessions, [waiting.item for waiting in batch])
        except Exception as exc:  # noqa: BLE001 - each waiter raises it in its own request
            for waiting in batch:
                waiting.error = exc
            return
        for waiting, result in zip(batch, results, strict=True):
            waiting.result = result

    def _publish_new(self, batch: list[_Waiting]) -> None:
        new = [(w, w.result) for w in batch if w.result is not None and not w.result.duplicate]
        if not new:
            return
        for waiting, _ in new:  # kept if the leader is stopped mid-publish
            waiting.publish_error = RuntimeError(_INTERRUPTED)
        error: Exception | None = None
        try:
            self._publish([(waiting.item, result) for waiting, result in new])
        except Exception as exc:  # noqa: BLE001 - stored already; the sweeper dispatches them
            error = exc
        for waiting, _ in new:
            waiting.publish_error = error
