"""What the web process's views need, composed once by the app factory."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from deskwire.event_store import Accepted, NewEvent
from deskwire.metrics_store import MetricsStore
from deskwire.settings import Settings
from webhooks.dispatch_marks import DispatchMarks
from webhooks.group_commit import GroupCommit
from worker.enqueue import StoredEvent


class EventQueue(Protocol):
    """Where accepted events are sent (the worker's enqueue API)."""

    def enqueue(self, event_pk: int, *, event_type: str, request_id: str | None) -> None:
        """Queue an event; raise when the broker is unreachable."""

    def enqueue_many(self, events: Sequence[StoredEvent]) -> None:
        """Queue events together, in order; raise when the broker is unreachable."""

    def ping(self) -> bool:
        """Whether the broker answers."""

    def last_worker_seen(self) -> float | None:
        """Seconds since any worker's last heartbeat (``None``: never); raises if unreadable."""


@dataclass(frozen=True)
class WebContext:
    """Settings, database sessions and the event queue of one web process."""

    settings: Settings
    sessions: sessionmaker[Session]
    queue: EventQueue
    # Extra health checks by name; each returns "ok" or says what is wrong.
    checks: Mapping[str, Callable[[], str]] = field(default_factory=dict)
    # Shared counters in Redis (None without a broker URL: nothing is counted).
    metrics: MetricsStore | None = None
    # Marks "published" in batches off the request path (see webhooks.dispatch_marks).
    dispatch_marks: DispatchMarks = field(init=False)
    # Stores events, one commit (and one publish) for the webhooks that arrive together.
    events: GroupCommit = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dispatch_marks", DispatchMarks(self.sessions))
        object.__setattr__(self, "events", GroupCommit(self.sessions, self._publish_group))

    def _publish_group(self, group: Sequence[tuple[NewEvent, Accepted]]) -> None:
        self.queue.enqueue_many(
            [StoredEvent(accepted.pk, item.event_type, item.request_id) for item, accepted in group]
        )


def web_context() -> WebContext:
    """The context of the running app."""
    context: WebContext = current_app.extensions["deskwire"]
    return context
