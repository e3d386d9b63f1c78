"""The baseline of the end-to-end benchmark: a trivial task under deskwire's Celery settings.

The task records when it ran (one RPUSH) and nothing else. The app is configured by
``worker.celery_app.celery_config``, so acks, prefetch, events and limits are deskwire's.
"""

from __future__ import annotations

import os
import time

import redis

from deskwire.settings import Settings
from worker.celery_app import create_celery

QUEUE = "trivial"
DONE = "bench:trivial:done"

app = create_celery(Settings(), os.environ["BENCH_REDIS_URL"])
_client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@app.task(name="bench.trivial")  # type: ignore[untyped-decorator]
def trivial(n: int) -> None:
    _client.rpush(DONE, f"{n} {time.time()}")
