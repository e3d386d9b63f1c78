"""Counters and histograms kept in Redis, so that every process adds to the same numbers.

Each web (gunicorn) and worker (Celery) process counts into Redis hashes; ``/metrics``
reads them at scrape time, together with what the database and the queue say, so the
numbers are right however many processes run and survive process restarts (a Redis
without persistence resets them, which Prometheus reads as a counter reset).
Counting never fails the caller: a Redis error is logged at debug level and dropped.

Counting is buffered per process: ``count`` and ``observe`` add to a dictionary, and a
daemon thread (started lazily in each process, as gunicorn and Celery fork after import)
writes what was added in one pipeline every :data:`FLUSH_INTERVAL` seconds, and once more at
exit. A round trip per webhook cost 5% of ingest. So ``/metrics`` may lag a process's counts
by up to one interval plus a flush (it writes its own process's first); a process killed
hard loses at most its last interval of counts.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

PREFIX = "deskwire:metrics:"
# Seconds: from a quick log step to a slow SDP call and a whole event with retries.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_INF = "+Inf"
FLUSH_INTERVAL = 0.5  # seconds between two writes of a process's buffered counts


def _field(labels: Mapping[str, str], part: str | None = None) -> str:
    try:
        return _field_of(tuple(sorted(labels.items())), part)
    except TypeError:  # a label value that cannot be a cache key
        return _encode(dict(labels), part)


# A worker counts a few fields per event, always the same ones: encode each once.
@functools.lru_cache(maxsize=4096)
def _field_of(labels: tuple[tuple[str, str], ...], part: str | None) -> str:
    return _encode(dict(labels), part)


def _encode(labels: Mapping[str, object], part: str | None) -> str:
    key: dict[str, object] = {"labels": dict(sorted(labels.items()))}
    if part is not None:
        key["part"] = part
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


class _Buffer:
    """What this process counted since the last flush, per Redis client: one per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # One flush at a time: a flush returns after any write in flight (a test that
        # empties Redis next, a process about to exit).
        self._flushing = threading.Lock()
        # id(client) → (client, {(hash, field): amount}); floats only for histogram sums.
        self._pending: dict[int, tuple[redis.Redis, dict[tuple[str, str], float]]] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def add(self, client: redis.Redis, increments: Iterable[tuple[str, str, float]]) -> None:
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._start()
            entry = self._pending.get(id(client))
            if entry is None:
                entry = self._pending[id(client)] = (client, {})
            pending = entry[1]
            for key, field, amount in increments:
                pending[key, field] = pending.get((key, field), 0) + amount

    def _start(self) -> None:
        # Started lazily in the process that counts (gunicorn and Celery fork after import).
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="deskwire-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL)
            self.flush()

    def flush(self) -> None:
        with self._flushing:
            self._write()

    def _write(self) -> None:
        with self._lock:
            taken, self._pending = self._pending, {}
        for client, pending in taken.values():
            try:
                pipe = client.pipeline(transaction=False)
                for (key, field), amount in pending.items():
                    if isinstance(amount, float):
                        pipe.hincrbyfloat(key, field, amount)
                    else:
                        pipe.hincrby(key, field, amount)
                pipe.execute()
            except Exception as exc:  # noqa: BLE001 - counting never fails (nor stops the thread)
                log.debug("metrics: %s count(s) not written (%s)", len(pending), exc)

    def after_fork(self) -> None:
        # The parent writes what it counted; a child starts empty, with a lock nobody holds.
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending = {}
        self._thread = None


_BUFFER = _Buffer()
os.register_at_fork(after_in_child=_BUFFER.after_fork)
atexit.register(_BUFFER.flush)


def flush_pending() -> None:
    """Write this process's buffered counts now (for a process that exits without atexit,
    e.g. a Celery pool child at shutdown); never raises for Redis errors."""
    _BUFFER.flush()


@dataclass(frozen=True)
class Sample:
    """One labelled value of a counter."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class HistogramSample:
    """One labelled histogram: cumulative bucket counts, the sum and the count."""

    labels: dict[str, str]
    buckets: dict[str, float]  # "0.05" … "+Inf" → observations ≤ that bound
    total: float
    count: float


class MetricsStore:
    """Counting into, and reading from, the Redis hashes under ``deskwire:metrics:``."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def count(self, name: str, labels: Mapping[str, str], amount: int = 1) -> None:
        """Add ``amount`` to counter ``name`` at ``labels`` (written within a flush interval)."""
        try:
            _BUFFER.add(self._redis, [(PREFIX + name, _field(labels), int(amount))])
        except Exception as exc:  # noqa: BLE001 - counting never fails the caller
            log.debug("metrics: %s not counted (%s)", name, exc)

    def observe(self, name: str, labels: Mapping[str, str], seconds: float) -> None:
        """Record one observation of histogram ``name`` at ``labels`` (written within a flush
        interval)."""
        key = PREFIX + name
        try:
            parts = [repr(bound) for bound in BUCKETS if seconds <= bound]
            increments = [(key, _field(labels, part), 1) for part in [*parts, _INF, "count"]]
            _BUFFER.add(
                self._redis, [*increments, (key, _field(labels, "sum"), max(0.0, float(seconds)))]
            )
        except Exception as exc:  # noqa: BLE001 - counting never fails the caller
            log.debug("metrics: %s not observed (%s)", name, exc)

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in a Celery queue on Redis (a list per priority; raises on error)."""
        names = [queue, *(f"{queue}\x06\x16{p}" for p in range(1, 10))]
        pipe = self._redis.pipeline(transaction=False)
        for list_name in names:
            pipe.llen(list_name)
        return sum(int(n) for n in pipe.execute())

    def _read(self, name: str) -> Iterable[tuple[dict[str, object], float]]:
        _BUFFER.flush()  # this process's own counts first: a reader sees what it counted
        raw = self._redis.hgetall(PREFIX + name)
        for field, value in raw.items():
            try:
                yield json.loads(field), float(value)
            except (ValueError, TypeError):
                continue  # not ours: never let a stray field break the scrape

    def counter(self, name: str) -> list[Sample]:
        """Every labelled value of counter ``name``."""
        samples = []
        for key, value in self._read(name):
            labels = key.get("labels")
            if "part" not in key and isinstance(labels, dict):
                samples.append(Sample({str(k): str(v) for k, v in labels.items()}, value))
        return samples

    def histogram(self, name: str) -> list[HistogramSample]:
        """Every labelled histogram of ``name``."""
        grouped: dict[str, dict[str, float]] = {}
        for key, value in self._read(name):
            part = key.get("part")
            if not isinstance(part, str):
                continue
            labels = json.dumps(key.get("labels", {}), sort_keys=True)
            grouped.setdefault(labels, {})[part] = value
        samples = []
        for labels, parts in sorted(grouped.items()):
            buckets = {repr(b): parts.get(repr(b), 0.0) for b in BUCKETS}
            buckets[_INF] = parts.get(_INF, 0.0)
            samples.append(
                HistogramSample(
                    json.loads(labels), buckets, parts.get("sum", 0.0), parts.get("count", 0.0)
                )
            )
        return samples


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_text(labels: Mapping[str, str]) -> str:
    """``{a="1",b="2"}`` in the Prometheus text format (empty for no labels)."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items())) + "}"


def render_counter(name: str, help_text: str, samples: list[Sample]) -> list[str]:
    """A counter family in the Prometheus text format."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    lines += [f"{name}{label_text(s.labels)} {s.value:g}" for s in samples]
    return lines


def render_histogram(name: str, help_text: str, samples: list[HistogramSample]) -> list[str]:
    """A histogram family in the Prometheus text format."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for sample in samples:
        for bound, value in sample.buckets.items():
            labels = {**sample.labels, "le": bound}
            lines.append(f"{name}_bucket{label_text(labels)} {value:g}")
        lines.append(f"{name}_sum{label_text(sample.labels)} {sample.total:g}")
        lines.append(f"{name}_count{label_text(sample.labels)} {sample.count:g}")
    return lines
