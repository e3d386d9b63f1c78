"""The enqueue API: the only part of the worker that the web process uses."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import redis
from celery import Celery

from deskwire.settings import Settings
from worker.celery_app import QUEUE, create_celery
from worker.heartbeat import last_seen
from worker.redis_transport import ReusedClientAMQP
from worker.task_publisher import TaskCall, TaskPublisher

PROCESS_EVENT = "deskwire.process_event"

log = logging.getLogger(__name__)

# Ingest must answer fast even when the broker is down: the event is already stored,
# and the worker's sweeper dispatches it later.
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


class EnqueueError(RuntimeError):
    """The broker did not take the task; the stored event is dispatched later."""


class StoredEvent(NamedTuple):
    """What a process-event task needs of a stored event (only ``pk`` travels)."""

    pk: int
    event_type: str
    request_id: str | None


def process_event_signature(event_type: str, request_id: str | None) -> str:
    """A readable task name for Flower and the logs, e.g. ``request.created #123``."""
    return f"{PROCESS_EVENT} {event_type}" + (f" #{request_id}" if request_id else "")


TASK_ID = re.compile(r"^event-(\d+)-[0-9a-f]+$")


def task_id_for(event_pk: int) -> str:
    """A task id that names its event, so a message in the broker queue can be traced."""
    return f"event-{event_pk}-{uuid.uuid4().hex}"


def event_of_task(task_id: str) -> int | None:
    """The event a task id was made for, or ``None`` for another id."""
    match = TASK_ID.match(task_id)
    return int(match.group(1)) if match else None


def send_process_event(
    app: Celery, event_pk: int, *, event_type: str, request_id: str | None, countdown: float = 0
) -> None:
    """Queue the processing of a stored event; only its id travels."""
    with _broker_errors():
        app.send_task(
            PROCESS_EVENT,
            args=[event_pk],
            task_id=task_id_for(event_pk),
            queue=QUEUE,
            countdown=countdown or None,
            shadow=process_event_signature(event_type, request_id),
            retry=True,
            retry_policy=_PUBLISH_RETRY,
        )


@contextmanager
def _broker_errors() -> Iterator[None]:
    """Whatever kombu raises for a broker that is down, as :class:`EnqueueError`."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - kombu raises many types for a broker that is down
        raise EnqueueError(f"broker unavailable: {type(exc).__name__}: {exc}") from None


class Enqueuer:
    """Sends process-event tasks for the web process."""

    def __init__(self, settings: Settings, broker_url: str) -> None:
        # One redis.Redis per publishing channel, not per publish (worker/redis_transport.py).
        self._app = create_celery(settings, broker_url, amqp=ReusedClientAMQP)
        # The message send_process_event sends, for less CPU (worker/task_publisher.py).
        self._publisher = TaskPublisher(self._app, _PUBLISH_RETRY)
        self._redis = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)

    def enqueue(self, event_pk: int, *, event_type: str, request_id: str | None) -> None:
        """Queue an event; raises :class:`EnqueueError` when the broker is unreachable."""
        with _broker_errors():
            self._publisher.publish(
                PROCESS_EVENT,
                [event_pk],
                task_id=task_id_for(event_pk),
                shadow=process_event_signature(event_type, request_id),
            )

    def enqueue_many(self, events: Sequence[StoredEvent]) -> None:
        """Queue events in order with one broker command (a commit group's, see
        webhooks/group_commit.py); raises :class:`EnqueueError` when the broker is
        unreachable."""
        calls = [
            TaskCall(
                PROCESS_EVENT,
                [event.pk],
                task_id_for(event.pk),
                process_event_signature(event.event_type, event.request_id),
            )
            for event in events
        ]
        with _broker_errors():
            self._publisher.publish_many(calls)

    def ping(self) -> bool:
        """Whether the broker answers."""
        try:
            with self._app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            return True
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return False

    def last_worker_seen(self) -> float | None:
        """Seconds since the last heartbeat of any worker; ``None`` if none was ever seen.

        Raises ``redis.RedisError`` when the broker does not answer.
        """
        return last_seen(self._redis)
