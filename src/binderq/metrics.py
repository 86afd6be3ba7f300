"""The table of binderq's Prometheus metrics: each one's name, help and labels, and the
bucket bounds of its histograms, once.

Reason to change: a metric is added, renamed or given other buckets.

Like tasks.py it lives at the top of the package because every layer reads it: services
record observations by these histograms, the Redis store keeps them under their names, the
collector (api/metrics.py) exports them, and the Grafana dashboard's test checks its queries
against them. It speaks neither Redis nor prometheus-client.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime

INF = float("inf")


@dataclass(frozen=True)
class HistogramSpec:
    """A histogram whose observations are counted in Redis, bucket by bucket, so that every
    process (gunicorn workers, Celery workers) adds to the same one."""

    name: str
    help: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...]  # upper bounds, ascending; +Inf is implied

    def bucket(self, value: float) -> str:
        """The bound of the one bucket value falls in (le: the smallest bound >= value), as
        the field name it is counted under ("+Inf" past the last)."""
        index = bisect.bisect_left(self.bounds, value)
        return format_bound(self.bounds[index]) if index < len(self.bounds) else "+Inf"

    def bucket_names(self) -> list[str]:
        """Every bucket's field name, in order, +Inf last."""
        return [*(format_bound(bound) for bound in self.bounds), "+Inf"]


def format_bound(bound: float) -> str:
    """A bound as Prometheus writes `le`: 0.5, 1.0, 2.5, +Inf."""
    return "+Inf" if bound == INF else repr(float(bound))


@dataclass(frozen=True)
class MetricSpec:
    """A gauge or counter the collector reads from Redis at scrape time."""

    name: str
    kind: str  # "gauge" or "counter" (a counter's name has no _total: the client adds it)
    help: str
    labels: tuple[str, ...] = ()


# Launch latency, seconds. Pooled launches answer in milliseconds, cold ones in seconds; one
# set of bounds covers both, so one query compares them.
LAUNCH_SECONDS = HistogramSpec(
    "binderq_launch_duration_seconds",
    "Launch latency: pooled, the API's claim from request to answer; cold, from the request "
    "(the server's created_at) to ready",
    ("kind",),
    (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
     120.0, 300.0),
)
BUILD_SECONDS = HistogramSpec(
    "binderq_build_duration_seconds",
    "Build duration, from its start on a build worker to its end, by how it ended",
    ("status",),
    (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0),
)
HISTOGRAMS: tuple[HistogramSpec, ...] = (LAUNCH_SECONDS, BUILD_SECONDS)

POOLED, COLD = "pooled", "cold"

CULLS = MetricSpec("binderq_culls", "counter", "servers stopped by the culler (idle or too old)")
SERVERS = MetricSpec("binderq_servers", "gauge", "servers that hold a place, by status",
                     ("status",))
CAPACITY = MetricSpec("binderq_servers_capacity", "gauge",
                      "servers that may exist at once (BINDERQ_MAX_SERVERS)")
QUEUE_DEPTH = MetricSpec("binderq_queue_depth", "gauge",
                         "tasks waiting in a Celery queue (not yet taken by a worker)",
                         ("queue",))
BUILDS_IN_PROGRESS = MetricSpec("binderq_builds_in_progress", "gauge",
                                "builds queued or running, by status", ("status",))
POOL_SIZE = MetricSpec("binderq_pool_size", "gauge", "servers the pool keeps ready",
                       ("staging",))
POOL_READY = MetricSpec("binderq_pool_ready", "gauge", "servers ready in the pool",
                        ("staging",))
POOL_STARTING = MetricSpec("binderq_pool_starting", "gauge", "pooled servers starting",
                           ("staging",))
POOL_IN_USE = MetricSpec("binderq_pool_in_use", "gauge",
                         "servers claimed from the pool and running", ("staging",))
POOL_HITS = MetricSpec("binderq_pool_hits", "counter", "launches served from the pool",
                       ("staging",))
POOL_MISSES = MetricSpec("binderq_pool_misses", "counter",
                         "launches that found the pool empty", ("staging",))
# The Pool attribute each pool metric reports.
POOL_METRICS: tuple[tuple[MetricSpec, str], ...] = (
    (POOL_SIZE, "size"), (POOL_READY, "ready"), (POOL_STARTING, "starting"),
    (POOL_IN_USE, "in_use"), (POOL_HITS, "hits"), (POOL_MISSES, "misses"),
)
METRICS: tuple[MetricSpec, ...] = (CULLS, SERVERS, CAPACITY, QUEUE_DEPTH, BUILDS_IN_PROGRESS,
                                   *(spec for spec, _ in POOL_METRICS))


def exported_names() -> set[str]:
    """Every series name /metrics can show (a counter's _total, a histogram's _bucket, _sum
    and _count): what a dashboard query may name."""
    names = set()
    for spec in METRICS:
        names.add(f"{spec.name}_total" if spec.kind == "counter" else spec.name)
    for histogram in HISTOGRAMS:
        names |= {f"{histogram.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
    return names


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """end - start in seconds, or None when either is unknown (or the clock went back)."""
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds()
