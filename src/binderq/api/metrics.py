"""/metrics (operator token, as JupyterHub's): binderq's figures as prometheus-client writes
them, read from Redis at scrape time, so every API process answers alike whichever one
Prometheus reaches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from binderq.adapters.redis_store import RedisStore
from binderq.api.context import context
from binderq.domain.access import require_operator
from binderq.metrics import (
    BUILDS_IN_PROGRESS,
    CAPACITY,
    CULLS,
    HISTOGRAMS,
    POOL_METRICS,
    QUEUE_DEPTH,
    SERVERS,
    HistogramSpec,
    MetricSpec,
)
from binderq.services import pools
from binderq.settings import Settings
from binderq.tasks import queues

blp = Blueprint("metrics", __name__)


@blp.route("/metrics")
def metrics() -> Response:
    ctx = context()
    require_operator(ctx.caller())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BinderqCollector(ctx.store, ctx.settings))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class BinderqCollector(Collector):
    """Every metric of binderq.metrics, from Redis, at each scrape."""

    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        yield from self._pool_metrics()
        yield from self._server_metrics()
        depths = self.store.metrics.queue_depths(queues(self.settings))
        yield _family(QUEUE_DEPTH, sorted(((queue,), depth) for queue, depth in depths.items()))
        in_progress = Counter(str(build.status) for build in self.store.builds.in_progress())
        yield _family(BUILDS_IN_PROGRESS, sorted(((status,), n)
                                                 for status, n in in_progress.items()))
        yield _family(CULLS, [((), self.store.metrics.counter(CULLS))])
        for histogram in HISTOGRAMS:
            yield self._histogram(histogram)

    def _pool_metrics(self) -> Iterator[Metric]:
        all_pools = pools.list_pools(store=self.store)
        for spec, attribute in POOL_METRICS:
            yield _family(spec, [((pool.staging,), getattr(pool, attribute))
                                 for pool in all_pools])

    def _server_metrics(self) -> Iterator[Metric]:
        by_status = Counter(str(server.status) for server in self.store.servers.active())
        yield _family(SERVERS, sorted(((status,), n) for status, n in by_status.items()))
        yield _family(CAPACITY, [((), self.settings.max_servers)])

    def _histogram(self, spec: HistogramSpec) -> HistogramMetricFamily:
        family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
        for labels, counts in sorted(self.store.metrics.histogram(spec).items()):
            family.add_metric(list(labels), cumulative_buckets(spec, counts.buckets),
                              counts.sum)
        return family


def cumulative_buckets(spec: HistogramSpec, counts: dict[str, int]) -> list[tuple[str, int]]:
    """Per-bucket counts (as Redis keeps them) as Prometheus' cumulative (le, count) pairs;
    a bound that is no longer in spec (its buckets changed) counts in +Inf only."""
    names = spec.bucket_names()
    known = set(names)
    running, cumulative = 0, []
    for name in names:
        running += counts.get(name, 0)
        if name == "+Inf":
            running += sum(n for bound, n in counts.items() if bound not in known)
        cumulative.append((name, running))
    return cumulative


def _family(spec: MetricSpec, samples: list[tuple[tuple[str, ...], float]]) -> Metric:
    kind = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
    family = kind(spec.name, spec.help, labels=spec.labels)
    for labels, value in samples:
        family.add_metric(list(labels), value)
    return family
