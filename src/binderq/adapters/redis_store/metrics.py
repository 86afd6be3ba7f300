"""Metrics in Redis: histograms counted bucket by bucket and counters, which every process
adds to, and the depth of each Celery queue; the collector (api/metrics.py) reads them at
scrape time.

A histogram is one hash: per label values, the count of observations that fell in each
bucket (not cumulative: one HINCRBY per observation) and their sum. Its count is the sum of
its buckets, so an observation is two commands in one round trip, and a scrape never sees a
count that disagrees with the buckets.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from binderq.adapters.redis_store.common import Keys, speaks_to_redis, text
from binderq.metrics import HistogramSpec, MetricSpec

SUM = "sum"


@dataclass
class HistogramCounts:
    """One label set's observations: how many fell in each bucket (by bound), and their sum."""

    buckets: dict[str, int] = field(default_factory=dict)
    sum: float = 0.0


@speaks_to_redis
class MetricsStore:
    """Histograms and counters that every binderq process adds to."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def observe(self, histogram: HistogramSpec, value: float, *labels: str) -> None:
        """Count value in its bucket of histogram, for these label values (in the order of
        histogram.labels), and add it to their sum: one round trip."""
        key = Keys.METRICS_HISTOGRAM.format(name=histogram.name)
        prefix = _label_field(labels)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, f"{prefix}|{histogram.bucket(value)}", 1)
            pipe.hincrbyfloat(key, f"{prefix}|{SUM}", value)
            pipe.execute()

    def histogram(self, histogram: HistogramSpec) -> dict[tuple[str, ...], HistogramCounts]:
        """Every label set's counts of histogram."""
        raw = self.redis.hgetall(Keys.METRICS_HISTOGRAM.format(name=histogram.name))
        found: dict[tuple[str, ...], HistogramCounts] = defaultdict(HistogramCounts)
        for raw_field, raw_value in raw.items():
            labels, _, bucket = text(raw_field).rpartition("|")
            counts = found[tuple(json.loads(labels))]
            if bucket == SUM:
                counts.sum = float(raw_value)
            else:
                counts.buckets[bucket] = int(raw_value)
        return dict(found)

    def count(self, counter: MetricSpec, by: int = 1) -> None:
        """Add to a counter (one without labels)."""
        self.redis.hincrby(Keys.METRICS_COUNTERS, counter.name, by)

    def counter(self, counter: MetricSpec) -> int:
        return int(self.redis.hget(Keys.METRICS_COUNTERS, counter.name) or 0)

    def queue_depths(self, queues: Iterable[str]) -> dict[str, int]:
        """Messages waiting in each Celery queue: kombu's Redis transport keeps a queue as a
        list under its name (messages taken by a worker but not acked are not in it)."""
        names = list(queues)
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(name)
            return dict(zip(names, map(int, pipe.execute()), strict=True))


def _label_field(labels: tuple[str, ...]) -> str:
    return json.dumps(list(labels), separators=(",", ":"))
