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
    """A Redis channel whose synchronous commands share one client per connection pool."""

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
