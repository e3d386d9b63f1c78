"""Worker heartbeats in Redis, so the web process (and ``doctor``) can tell whether any
worker is alive and consuming.

Each worker's main process writes its name into one sorted set, scored with Redis's own
clock (``TIME``), from the event loop that also consumes tasks: a worker that is stuck
reconnecting, or dead, stops beating. Readers compare against the same clock, so the
hosts' clocks do not matter.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any, ClassVar, cast

import redis
from celery import bootsteps

log = logging.getLogger(__name__)

HEARTBEATS = "deskwire:workers"
FORGET_AFTER = 86400.0  # a worker silent for a day is dropped from the set


def redis_now(client: redis.Redis) -> float:
    """The Redis server's clock, in seconds."""
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


def beat(client: redis.Redis, name: str) -> None:
    """Record that worker ``name`` is alive now."""
    now = redis_now(client)
    pipe = client.pipeline()
    pipe.zadd(HEARTBEATS, {name: now})
    pipe.zremrangebyscore(HEARTBEATS, "-inf", now - FORGET_AFTER)
    pipe.execute()


def forget(client: redis.Redis, name: str) -> None:
    """Remove a worker that stops on purpose."""
    client.zrem(HEARTBEATS, name)


def workers_seen(client: redis.Redis) -> dict[str, float]:
    """Each known worker and the seconds since its last heartbeat."""
    now = redis_now(client)
    rows = cast(list[tuple[Any, float]], client.zrange(HEARTBEATS, 0, -1, withscores=True))
    return {
        (name.decode() if isinstance(name, bytes) else str(name)): max(0.0, now - float(score))
        for name, score in rows
    }


def last_seen(client: redis.Redis) -> float | None:
    """Seconds since the newest heartbeat of any worker; ``None`` if none is known."""
    seen = workers_seen(client)
    return min(seen.values()) if seen else None


class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Beats every ``interval`` seconds from the worker's event loop."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Timer"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_ref: Any = None
        self.client: redis.Redis | None = None
        self.name = ""

    def start(self, parent: Any) -> None:
        """Schedule the heartbeat on the worker's timer."""
        interval: float = parent.app.conf.deskwire_heartbeat_interval
        self.client = redis.Redis.from_url(
            parent.app.conf.broker_url, socket_timeout=5, socket_connect_timeout=5
        )
        self.name = str(parent.hostname)
        client, name = self.client, self.name

        def run() -> None:
            try:
                beat(client, name)
            except redis.RedisError as exc:
                log.debug("heartbeat: Redis unavailable (%s)", exc)

        run()
        self.timer_ref = parent.timer.call_repeatedly(interval, run, priority=10)

    def stop(self, parent: Any) -> None:
        """Cancel the timer and leave the set: a stopped worker is not alive."""
        if self.timer_ref is not None:
            self.timer_ref.cancel()
        if self.client is not None:
            with suppress(redis.RedisError):
                forget(self.client, self.name)
