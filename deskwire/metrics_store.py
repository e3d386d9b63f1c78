"""Counters and histograms kept in Redis, so that every process adds to the same numbers.

Each web (gunicorn) and worker (Celery) process counts into Redis hashes; ``/metrics``
reads them at scrape time, together with what the database and the queue say, so the
numbers are right however many processes run and survive process restarts (a Redis
without persistence resets them, which Prometheus reads as a counter reset).
Counting never fails the caller: a Redis error is logged at debug level and dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

PREFIX = "deskwire:metrics:"
# Seconds: from a quick log step to a slow SDP call and a whole event with retries.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_INF = "+Inf"


def _field(labels: Mapping[str, str], part: str | None = None) -> str:
    key: dict[str, object] = {"labels": dict(sorted(labels.items()))}
    if part is not None:
        key["part"] = part
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


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
        """Add ``amount`` to counter ``name`` at ``labels``."""
        try:
            self._redis.hincrby(PREFIX + name, _field(labels), amount)
        except redis.RedisError as exc:
            log.debug("metrics: %s not counted (%s)", name, exc)

    def observe(self, name: str, labels: Mapping[str, str], seconds: float) -> None:
        """Record one observation of histogram ``name`` at ``labels``."""
        key = PREFIX + name
        try:
            pipe = self._redis.pipeline(transaction=False)
            for bound in BUCKETS:
                if seconds <= bound:
                    pipe.hincrby(key, _field(labels, repr(bound)), 1)
            pipe.hincrby(key, _field(labels, _INF), 1)
            pipe.hincrby(key, _field(labels, "count"), 1)
            pipe.hincrbyfloat(key, _field(labels, "sum"), max(0.0, seconds))
            pipe.execute()
        except redis.RedisError as exc:
            log.debug("metrics: %s not observed (%s)", name, exc)

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in a Celery queue on Redis (a list per priority; raises on error)."""
        names = [queue, *(f"{queue}\x06\x16{p}" for p in range(1, 10))]
        pipe = self._redis.pipeline(transaction=False)
        for list_name in names:
            pipe.llen(list_name)
        return sum(int(n) for n in pipe.execute())

    def _read(self, name: str) -> Iterable[tuple[dict[str, object], float]]:
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
