"""Publishing process-event tasks from the web process, without ``app.send_task``.

``send_task`` spends about 40% of a publish outside building the message and sending it
(cProfile, 2026-11-29): routing, re-declaring the queue (kombu binds copies of the
Queue before its per-channel "already declared" check), a producer from the pool (acquire,
revive, release), the parent-task and result lookups. The web sends one task to one
queue, so :class:`TaskPublisher` builds the same message with Celery's own
``amqp.create_task_message`` and publishes it with kombu's ``Producer.publish`` (same
exchange, routing key, serializer, delivery mode and bounded retry), from a producer kept
per thread. tests/test_enqueue_publish.py checks the message equals ``send_task``'s.
"""

from __future__ import annotations

import os
import threading
from contextlib import suppress
from typing import Any

from celery import Celery
from kombu.messaging import Producer

from worker.celery_app import QUEUE


class TaskPublisher:
    """Publishes tasks to :data:`QUEUE` like ``app.send_task(queue=QUEUE)`` does."""

    def __init__(self, app: Celery, retry_policy: dict[str, Any]) -> None:
        self._app = app
        conf = app.conf
        queue = app.amqp.queues[QUEUE]
        self._publish_options: dict[str, Any] = {
            # A direct exchange: Celery sends to the default exchange, routing key = queue.
            "exchange": "",
            "routing_key": QUEUE,
            "serializer": conf.task_serializer,
            "compression": conf.task_compression,
            "delivery_mode": queue.exchange.delivery_mode or conf.task_default_delivery_mode,
            "retry": True,
            "retry_policy": dict(conf.task_publish_retry_policy, **retry_policy),
        }
        self._local = threading.local()

    def publish(self, name: str, args: list[Any], *, task_id: str, shadow: str) -> None:
        """Publish one task message; raises what kombu raises once the retries are spent."""
        app = self._app
        message = app.amqp.create_task_message(
            task_id,
            name,
            args,
            {},
            reply_to=app.thread_oid,
            create_sent_event=False,
            shadow=shadow,
            ignore_result=None,  # None: the task's own setting decides, as with send_task
        )
        producer = self._producer()
        try:
            producer.publish(  # type: ignore[no-untyped-call]
                message.body, headers=message.headers, **self._publish_options, **message.properties
            )
        except BaseException:
            self._drop(producer)  # the next publish starts from a new connection
            raise

    def _producer(self) -> Producer:
        local = self._local
        producer: Producer | None = getattr(local, "producer", None)
        # A forked child must not share its parent's sockets.
        if producer is None or local.pid != os.getpid():
            connection = self._app.connection_for_write()
            producer = local.producer = Producer(connection)  # type: ignore[no-untyped-call]
            local.pid = os.getpid()
        return producer

    def _drop(self, producer: Producer) -> None:
        self._local.producer = None
        with suppress(Exception):  # closing a connection to a Redis that is gone
            producer.connection.close()
