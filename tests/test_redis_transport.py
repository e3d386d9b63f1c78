"""The web's publishing transport (one redis.Redis per channel) on real redis-servers of
each test's own: messages as the worker reads them, a Redis restart, a Redis that is
down, the redis+socket:// form, and the worker's app left on kombu's stock transport."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection, Consumer, Message, Queue

from deskwire.embedded import EmbeddedRedis, find_redis_server
from deskwire.settings import Settings
from worker.celery_app import QUEUE, create_celery
from worker.enqueue import PROCESS_EVENT, TASK_ID, EnqueueError, send_process_event
from worker.redis_transport import ReusedClientAMQP, ReusedClientChannel


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test alone, so the test may stop and restart it."""
    own = EmbeddedRedis(tmp_path / "redis", persistent=False)
    own.start()
    yield own
    own.stop()


@contextmanager
def socket_server(tmp_path: Path) -> Iterator[str]:
    """A redis-server on a unix socket only; yields its ``redis+socket://`` URL."""
    path = tmp_path / "r.sock"
    process = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--unixsocket", str(path), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(unix_socket_path=str(path))
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "redis-server on a socket did not start"
                time.sleep(0.05)
        client.close()
        yield f"redis+socket://{path}"
    finally:
        process.terminate()
        process.wait(timeout=10)


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
        assert message.headers["shadow"] == f"{PROCESS_EVENT} request.created #{pk}"
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


def test_publishing_resumes_after_a_redis_restart(server: EmbeddedRedis) -> None:
    app = web_app(server.url)
    publish(app, 1)
    assert_task_messages(consume(server.url, 1), [1])
    # Restarted while the web is idle: the pooled connection is dead and must not stick.
    server.stop()
    server.start()
    publish(app, 2)
    assert_task_messages(consume(server.url, 1), [2])  # this Redis keeps nothing over a restart
    # Down at publish time: a quick EnqueueError (the sweeper dispatches the event later).
    server.stop()
    started = time.monotonic()
    with pytest.raises(EnqueueError):
        publish(app, 3)
    assert time.monotonic() - started < 5
    server.start()
    publish(app, 4)
    assert isinstance(publishing_channel(app), ReusedClientChannel)
    assert_task_messages(consume(server.url, 1), [4])


def test_redis_socket_urls_publish_through_the_reused_client(tmp_path: Path) -> None:
    with socket_server(tmp_path) as url:
        app = web_app(url)
        publish(app, 1)
        publish(app, 2)
        assert isinstance(publishing_channel(app), ReusedClientChannel)
        assert_task_messages(consume(url, 2), [1, 2])


def test_the_worker_app_keeps_kombus_transport(server: EmbeddedRedis) -> None:
    # kombu's connection pools are process-wide, keyed by the connection: the web's app
    # must not lend its transport to the worker's app on the same URL, nor the reverse.
    web, worker = web_app(server.url), create_celery(Settings(broker_url=server.url), server.url)
    publish(web, 1)
    publish(worker, 2)
    assert isinstance(publishing_channel(web), ReusedClientChannel)
    assert type(publishing_channel(worker)) is not ReusedClientChannel
    assert_task_messages(consume(server.url, 2), [1, 2])
