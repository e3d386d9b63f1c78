"""kombu's Redis transport with one reused client per channel, for deskwire's Celery apps.

kombu's Redis ``Channel.conn_or_acquire()`` builds a new ``redis.Redis`` for every
command it sends outside the consumer's poll (every publish): redis-py's ``__init__``
copies its ~200 response callbacks each time, ~8% of the web process's CPU under
ingest. The new client only wraps the channel's (shared, thread-safe) connection pool:
it holds no connection of its own, so one client per pool sends the same commands.
A fresh client per call is kept upstream because the channel's *asynchronous* client
owns a dedicated connection (BRPOP/LISTEN in the consumer's poller); that path
(``Channel.client``, ``subclient``, ``_create_client(asynchronous=True)``) is untouched.

deskwire's apps use it (``Celery(amqp=ReusedClientAMQP)``: the web's ``Enqueuer`` and
``deskwire.compose.celery_app``, the worker's, where every task's acknowledgement and its
three task events for Flower each built a client: 14% of the pool's main process). The
settings are ``celery_config()``'s either way; the benchmark's baselines (stock Celery
apps) keep kombu's transport.

The channel's publish batch (``Producer.batch()``, used by
:meth:`worker.task_publisher.TaskPublisher.publish_many`) sends one ``LPUSH queue m1 … mk``
instead of kombu's pipeline of one LPUSH per message: see :class:`OneLpushBatch`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from celery.app.amqp import AMQP
from kombu.connection import Connection, ConnectionPool, PooledConnection
from kombu.transport import redis as kombu_redis
from kombu.utils.collections import HashedSeq


class ReusedClientChannel(kombu_redis.Channel):
    """A Redis channel whose synchronous commands share one client per connection pool,
    and whose publish batch is one LPUSH per queue (:class:`OneLpushBatch`)."""

    _sync_client: redis.Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client:
            yield client
            return
        pool = self.pool  # a new pool after _disconnect_pools() (fork, close) gets a new client
        cached = self._sync_client
        if cached is None or cached.connection_pool is not pool:
            cached = self._sync_client = self._create_client()  # type: ignore[no-untyped-call]
        yield cached

    def create_publish_batch(self, max_size: int) -> OneLpushBatch:
        return OneLpushBatch(self, max_size)


class OneLpushBatch:
    """A publish batch that sends each queue's messages with one ``LPUSH``, at flush.

    Mirrors ``kombu.transport.redis.PublishBatch`` (kombu 5.7: the session that
    ``Producer.batch()`` gets from ``Channel.create_publish_batch``), which buffers one
    LPUSH per message in a pipeline: redis-py still packs each command and parses each
    reply, the cost batching is meant to save. The message is built and routed by kombu's
    own ``basic_publish`` and ``_put``, which hand their final commands to :meth:`add`
    (the ``_publish_batch`` argument). LPUSH pushes its values in order, so a consumer's
    BRPOP reads them in publish order. Errors are not wrapped (kombu raises
    ``BatchPublishError``): a caller's ``Connection.ensure`` retries connection errors.
    """

    def __init__(self, channel: ReusedClientChannel, max_size: int) -> None:
        self.channel = channel
        self.max_size = max_size
        self._pushes: dict[str, list[Any]] = {}  # queue key -> payloads, in publish order
        self._others: list[tuple[str, tuple[Any, ...]]] = []  # PEXPIRE (x-expires), PUBLISH
        self._published = 0

    def publish(self, message: dict[str, Any], **kwargs: Any) -> None:
        self.channel.basic_publish(message, _publish_batch=self, **kwargs)  # type: ignore[no-untyped-call]
        self._published += 1
        if self._published >= self.max_size:
            self.flush()

    def add(self, name: str, *args: Any) -> None:
        if name == "lpush":
            key, payload = args
            self._pushes.setdefault(key, []).append(payload)
        else:  # after the pushes, as kombu orders them (PEXPIRE needs the key to exist)
            self._others.append((name, args))

    def flush(self) -> None:
        commands = [("lpush", (key, *values)) for key, values in self._pushes.items()]
        commands += self._others
        self.discard()
        if not commands:
            return
        with self.channel.conn_or_acquire() as client:
            if len(commands) == 1:  # deskwire's queue: the one command
                name, args = commands[0]
                getattr(client, name)(*args)
                return
            with client.pipeline(transaction=False) as pipe:
                for name, args in commands:
                    getattr(pipe, name)(*args)
                pipe.execute()

    def discard(self) -> None:
        self._pushes, self._others, self._published = {}, [], 0

    def close(self) -> None:
        """Nothing to release: the batch holds no connection (the channel's client sends)."""


class ReusedClientTransport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`ReusedClientChannel`."""

    Channel = ReusedClientChannel


class ReusedClientConnection(Connection):
    """A kombu connection that swaps in :class:`ReusedClientTransport` for plain Redis.

    Swapped after kombu has parsed the URL, not passed as ``transport=``: that would skip
    kombu's handling of ``redis+socket://`` (the ``+`` scheme picks the transport) and
    ``rediss://`` (TLS is switched on only for the transport named ``rediss``).
    """

    def get_transport_cls(self) -> Any:
        found = super().get_transport_cls()  # type: ignore[no-untyped-call]
        return ReusedClientTransport if found is kombu_redis.Transport else found

    def __eqhash__(self) -> Any:
        # kombu's process-wide connection and producer pools are keyed by this: apart from
        # a stock connection to the same URL (a worker's app in the same process).
        return HashedSeq(ReusedClientTransport, super().__eqhash__())  # type: ignore[no-untyped-call]

    def Pool(self, limit: int | None = None, **kwargs: Any) -> ConnectionPool:  # noqa: N802
        return _Pool(self, limit=limit, **kwargs)  # type: ignore[no-untyped-call]


class _PooledConnection(ReusedClientConnection, PooledConnection):
    """What :class:`_Pool` hands out (kombu's would fall back to the stock transport)."""


class _Pool(ConnectionPool):
    def new(self) -> _PooledConnection:
        info = dict(self.connection._info(resolve=False))
        return _PooledConnection(self, **info)  # type: ignore[no-untyped-call]


class ReusedClientAMQP(AMQP):  # type: ignore[misc]
    """Celery's AMQP helpers with :class:`ReusedClientConnection` (``Celery(amqp=...)``)."""

    Connection = ReusedClientConnection
