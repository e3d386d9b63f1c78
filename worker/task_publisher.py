"""Publishing process-event tasks from the web process, without ``app.send_task``.

``send_task`` spends about 40% of a publish outside building the message and sending it
(cProfile, 2026-11-29): routing, re-declaring the queue (kombu binds copies of the
Queue before its per-channel "already declared" check), a producer from the pool (acquire,
revive, release), the parent-task and result lookups. The web sends one task to one
queue, so :class:`TaskPublisher` builds the same message with Celery's own
``amqp.create_task_message`` and publishes it with kombu's ``Producer.publish`` (same
exchange, routing key, serializer, delivery mode and bounded retry), from a producer kept
per thread. tests/test_enqueue_publish.py checks the message equals ``send_task``'s.

:meth:`TaskPublisher.publish_many` publishes several tasks (the new events of one group
commit, webhooks/group_commit.py) inside kombu's ``Producer.batch()``: each message is
the one :meth:`~TaskPublisher.publish` sends, and deskwire's Redis channel sends the batch
as one ``LPUSH`` (worker/redis_transport.py). The Redis command (redis-py packing it,
the round trip, parsing the reply) was about half of a publish's CPU in the web process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, NamedTuple

from celery import Celery
from kombu.messaging import Producer

from worker.celery_app import QUEUE


class TaskCall(NamedTuple):
    """One task to publish: its name, arguments, id and the name it is shown under."""

    name: str
    args: list[Any]
    task_id: str
    shadow: str


class TaskPublisher:
    """Publishes tasks to :data:`QUEUE` like ``app.send_task(queue=QUEUE)`` does."""

    def __init__(self, app: Celery, retry_policy: dict[str, Any]) -> None:
        self._app = app
        conf = app.conf
        queue = app.amqp.queues[QUEUE]
        self._message_options: dict[str, Any] = {
            # A direct exchange: Celery sends to the default exchange, routing key = queue.
            "exchange": "",
            "routing_key": QUEUE,
            "serializer": conf.task_serializer,
            "compression": conf.task_compression,
            "delivery_mode": queue.exchange.delivery_mode or conf.task_default_delivery_mode,
        }
        self._retry_policy: dict[str, Any] = dict(conf.task_publish_retry_policy, **retry_policy)
        self._local = threading.local()

    def publish(self, name: str, args: list[Any], *, task_id: str, shadow: str) -> None:
        """Publish one task message; raises what kombu raises once the retries are spent."""
        message = self._message(TaskCall(name, args, task_id, shadow))
        producer = self._producer()
        try:
            producer.publish(  # type: ignore[no-untyped-call]
                message.body,
                headers=message.headers,
                retry=True,
                retry_policy=self._retry_policy,
                **self._message_options,
                **message.properties,
            )
        except BaseException:
            self._drop(producer)  # the next publish starts from a new connection
            raise

    def publish_many(self, calls: Sequence[TaskCall]) -> None:
        """Publish several task messages together, in order: one LPUSH on deskwire's Redis
        transport, so the queue gets all of them or none. Raises what kombu raises once the
        retries are spent. The messages are :meth:`publish`'s, and so is the retry policy.
        """
        if len(calls) <= 1:  # a lone task: publish's path, without the batch's bookkeeping
            for call in calls:
                self.publish(call.name, call.args, task_id=call.task_id, shadow=call.shadow)
            return
        messages = [self._message(call) for call in calls]
        producer = self._producer()
        connection = producer.connection
        # As Producer.publish(retry=True) does: ensure's reconnects read their bounds here.
        connection.transport_options.update(self._retry_policy)
        # A retry after a lost reply may push the batch twice: harmless, the worker's atomic
        # claim drops a second message for the same event.
        send = connection.ensure(producer, self._send_batch, **self._retry_policy)
        try:
            send(producer, messages)
        except BaseException:
            self._drop(producer)
            raise

    def _send_batch(self, producer: Producer, messages: list[Any]) -> None:
        # Each publish only builds and routes its message; the batch's exit sends them all.
        with producer.batch():  # type: ignore[no-untyped-call]
            for message in messages:
                producer.publish(  # type: ignore[no-untyped-call]
                    message.body,
                    headers=message.headers,
                    **self._message_options,
                    **message.properties,
                )

    def _message(self, call: TaskCall) -> Any:
        """Celery's task message (protocol 2) for ``call``, as ``send_task`` builds it."""
        return self._app.amqp.create_task_message(
            call.task_id,
            call.name,
            call.args,
            {},
            reply_to=self._app.thread_oid,
            create_sent_event=False,
            shadow=call.shadow,
            ignore_result=None,  # None: the task's own setting decides, as with send_task
        )

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
