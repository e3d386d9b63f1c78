"""The web's publishing (worker/task_publisher.py over worker/redis_transport.py) on real
redis-servers of each test's own: the message send_task sends, messages as the worker
reads them, one client per channel, a Redis restart, a Redis that is down, the worker's
app on the same transport, and a stock app left on kombu's; a group's messages in one
LPUSH. (Unix-socket broker URLs are refused by the settings: tests/test_cli.py.)"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection, Consumer, Message, Queue

from deskwire.compose import celery_app
from deskwire.embedded import EmbeddedRedis
from deskwire.settings import Settings
from worker.celery_app import QUEUE, create_celery
from worker.enqueue import (
    PROCESS_EVENT,
    TASK_ID,
    EnqueueError,
    Enqueuer,
    StoredEvent,
    send_process_event,
)
from worker.redis_transport import ReusedClientAMQP, ReusedClientChannel

SHADOW = f"{PROCESS_EVENT} request.created #%d"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test alone, so the test may stop and restart it."""
    own = EmbeddedRedis(tmp_path / "redis", persistent=False)
    own.start()
    yield own
    own.stop()


def web_app(url: str) -> Celery:
    return create_celery(Settings(broker_url=url), url, amqp=ReusedClientAMQP)


def publish(app: Celery, pk: int) -> None:
    send_process_event(app, pk, event_type="request.created", request_id=str(pk))


def consume(url: str, count: int) -> list[Message]:
    """Read ``count`` messages off the queue with kombu's stock transport, as a worker does."""
    got: list[Message] = []
    with Connection(url) as conn, Consumer(conn, [Queue(QUEUE)], accept=["json"]) as consumer:
        consumer.register_callback(lambda _body, message: got.append(message))
        deadline = time.monotonic() + 10
        while len(got) < count and time.monotonic() < deadline:
            with suppress(TimeoutError):
                conn.drain_events(timeout=0.5)
        for message in got:
            message.ack()
    return got


def publishing_channel(app: Celery) -> Any:
    with app.producer_or_acquire() as producer:
        return producer.channel


def assert_task_messages(messages: list[Message], pks: list[int]) -> None:
    assert sorted(m.decode()[0][0] for m in messages) == sorted(pks)
    for message in messages:
        (pk,), _, _ = message.decode()
        assert message.headers["task"] == PROCESS_EVENT
        assert message.headers["shadow"] == SHADOW % pk
        match = TASK_ID.match(message.headers["id"])
        assert match
        assert int(match.group(1)) == pk
        assert message.delivery_info["routing_key"] == QUEUE


def test_publishes_reuse_one_client_and_the_worker_reads_them(server: EmbeddedRedis) -> None:
    app = web_app(server.url)
    for pk in (1, 2, 3):
        publish(app, pk)
    channel = publishing_channel(app)
    assert isinstance(channel, ReusedClientChannel)
    client = channel._sync_client
    publish(app, 4)
    assert publishing_channel(app)._sync_client is client  # not one per publish
    assert_task_messages(consume(server.url, 4), [1, 2, 3, 4])


def test_a_new_pool_after_fork_or_close_gets_a_new_client(server: EmbeddedRedis) -> None:
    app = web_app(server.url)
    publish(app, 1)
    channel = publishing_channel(app)
    old = channel._sync_client
    channel._disconnect_pools()  # what kombu runs in a forked child
    publish(app, 2)
    assert channel._sync_client is not old
    assert channel._sync_client.connection_pool is channel.pool
    assert_task_messages(consume(server.url, 2), [1, 2])


def survives_redis_restarts(
    server: EmbeddedRedis, send: Callable[[int], None], *, batch: int = 1
) -> None:
    """``send(pk)`` (the tasks of events ``pk`` to ``pk + batch - 1``) publishes again after
    a restart while idle, and fails fast while Redis is down (EnqueueError in under 5 s:
    the request is answered, the sweeper sends later)."""

    def sent(pk: int) -> None:
        assert_task_messages(consume(server.url, batch), list(range(pk, pk + batch)))

    send(10)
    sent(10)
    server.stop()
    server.start()
    send(20)  # the pooled connection died while idle: not stuck on it
    sent(20)  # this Redis keeps nothing over a restart
    server.stop()
    started = time.monotonic()
    with pytest.raises(EnqueueError):
        send(30)
    assert time.monotonic() - started < 5
    server.start()
    send(40)
    sent(40)


def test_publishing_resumes_after_a_redis_restart(server: EmbeddedRedis) -> None:
    app = web_app(server.url)
    survives_redis_restarts(server, lambda pk: publish(app, pk))
    assert isinstance(publishing_channel(app), ReusedClientChannel)


def test_a_stock_app_on_the_same_url_keeps_kombus_transport(server: EmbeddedRedis) -> None:
    # kombu's connection pools are process-wide, keyed by the connection: deskwire's app
    # must not lend its transport to a stock app on the same URL (the benchmark's
    # baselines), nor the reverse.
    ours, stock = web_app(server.url), create_celery(Settings(broker_url=server.url), server.url)
    publish(ours, 1)
    publish(stock, 2)
    assert isinstance(publishing_channel(ours), ReusedClientChannel)
    assert type(publishing_channel(stock)) is not ReusedClientChannel
    assert_task_messages(consume(server.url, 2), [1, 2])


def test_the_worker_app_reuses_one_client_per_channel(server: EmbeddedRedis) -> None:
    worker = celery_app(Settings(broker_url=server.url))
    publish(worker, 3)
    assert isinstance(publishing_channel(worker), ReusedClientChannel)
    assert_task_messages(consume(server.url, 1), [3])


def enqueuer(url: str) -> Enqueuer:
    return Enqueuer(Settings(broker_url=url), url)


def enqueue(queue: Enqueuer, pk: int) -> None:
    queue.enqueue(pk, event_type="request.created", request_id=str(pk))


def enqueue_many(queue: Enqueuer, pks: list[int]) -> None:
    queue.enqueue_many([StoredEvent(pk, "request.created", str(pk)) for pk in pks])


def queued_in_arrival_order(url: str) -> list[dict[str, Any]]:
    """The queue's messages, oldest first, without the parts that differ on every publish."""
    messages = [
        json.loads(item) for item in reversed(redis.Redis.from_url(url).lrange(QUEUE, 0, -1))
    ]
    for message in messages:
        headers, properties = message["headers"], message["properties"]
        assert TASK_ID.match(headers.pop("id"))
        assert headers.pop("root_id") == properties.pop("correlation_id")
        properties.pop("delivery_tag"), properties.pop("reply_to")
    return messages


def test_the_web_sends_the_message_send_task_sends(server: EmbeddedRedis) -> None:
    publish(create_celery(Settings(broker_url=server.url), server.url), 5)
    enqueue(enqueuer(server.url), 5)
    by_send_task, by_web = queued_in_arrival_order(server.url)
    assert by_web == by_send_task


def test_a_batch_sends_send_tasks_messages_with_one_lpush(server: EmbeddedRedis) -> None:
    pks = [5, 6, 7]
    stock = create_celery(Settings(broker_url=server.url), server.url)
    for pk in pks:
        publish(stock, pk)
    client = redis.Redis.from_url(server.url)
    client.config_resetstat()
    queue = enqueuer(server.url)
    enqueue_many(queue, pks)
    enqueue_many(queue, [])  # nothing to send: no command
    assert client.info("commandstats")["cmdstat_lpush"]["calls"] == 1
    messages = queued_in_arrival_order(server.url)
    assert messages[3:] == messages[:3]  # the batch's, in its order, equal send_task's


def test_a_batch_is_consumed_in_its_order(server: EmbeddedRedis) -> None:
    queue = enqueuer(server.url)
    enqueue_many(queue, [3, 1, 2])
    got = consume(server.url, 3)
    assert [message.decode()[0][0] for message in got] == [3, 1, 2]
    assert_task_messages(got, [3, 1, 2])


def test_threads_publish_on_producers_of_their_own(server: EmbeddedRedis) -> None:
    queue = enqueuer(server.url)
    errors: list[BaseException] = []

    def run(first: int) -> None:
        try:
            for pk in range(first, first + 20):
                enqueue(queue, pk)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n * 100,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    pks = [n * 100 + i for n in range(4) for i in range(20)]
    assert_task_messages(consume(server.url, len(pks)), pks)


def test_the_web_publishes_again_after_a_redis_restart(server: EmbeddedRedis) -> None:
    queue = enqueuer(server.url)
    survives_redis_restarts(server, lambda pk: enqueue(queue, pk))


def test_a_batch_is_published_again_after_a_redis_restart(server: EmbeddedRedis) -> None:
    queue = enqueuer(server.url)
    survives_redis_restarts(server, lambda pk: enqueue_many(queue, [pk, pk + 1, pk + 2]), batch=3)


def test_a_redis_down_from_the_start_raises_enqueue_error_quickly(
    server: EmbeddedRedis,
) -> None:
    server.stop()
    queue = enqueuer(server.url)
    started = time.monotonic()
    with pytest.raises(EnqueueError):
        enqueue(queue, 1)
    assert time.monotonic() - started < 5
    with pytest.raises(EnqueueError):
        enqueue_many(queue, [3, 4])
    assert time.monotonic() - started < 10
    server.start()
    enqueue(queue, 2)
    assert_task_messages(consume(server.url, 1), [2])
