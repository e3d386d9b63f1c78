"""What the web process's views need, composed once by the app factory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from deskwire.settings import Settings
from webhooks.dispatch_marks import DispatchMarks
from webhooks.group_commit import GroupCommit


class EventQueue(Protocol):
    """Where accepted events are sent (the worker's enqueue API)."""

    def enqueue(self, event_pk: int, *, event_type: str, request_id: str | None) -> None:
        """Queue an event; raise when the broker is unreachable."""

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
    # Marks "published" in batches off the request path (see webhooks.dispatch_marks).
    dispatch_marks: DispatchMarks = field(init=False)
    # Stores events, one commit for the webhooks that arrive together.
    events: GroupCommit = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dispatch_marks", DispatchMarks(self.sessions))
        object.__setattr__(self, "events", GroupCommit(self.sessions))


def web_context() -> WebContext:
    """The context of the running app."""
    context: WebContext = current_app.extensions["deskwire"]
    return context
