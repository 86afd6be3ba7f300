"""/metrics from prometheus-client: histograms counted in Redis by every process, gauges and
counters read from Redis at scrape time, and where each observation is recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from binderq.adapters.redis_store.metrics import MetricsStore
from binderq.api.metrics import cumulative_buckets
from binderq.domain.builds import BuildStatus
from binderq.domain.errors import DependencyDown
from binderq.domain.models import ServerStatus, utcnow
from binderq.metrics import BUILD_SECONDS, CULLS, LAUNCH_SECONDS, HistogramSpec, exported_names
from binderq.services import deploy, lifecycle, pools
from binderq.services.builds import request_build, run_build
from tests.fakes import FakeBuilder, FakeGit
from tests.helpers import OPERATOR_CALLER, launch_now, ready_staging, run_queued_launches
from tests.unit.conftest import OPERATOR

SMALL = HistogramSpec("t_seconds", "test", ("kind",), (0.1, 1.0, 10.0))


def scrape(client) -> dict[str, dict[tuple, float]]:
    """/metrics parsed: {sample name: {sorted label items: value}}."""
    response = client.get("/metrics", headers=OPERATOR)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return samples


def launches(samples, kind: str) -> float:
    return samples.get("binderq_launch_duration_seconds_count", {}).get((("kind", kind),), 0)


@pytest.fixture
def pooled(store, queue, runtime, proxy, settings):
    """A ready staging `demo` with a pool of 2 ready servers."""
    ready_staging(store, queue, runtime)
    pools.set_pool_size("demo", 2, store=store, queue=queue, settings=settings)
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue, settings=settings)
    run_queued_launches(store, queue, runtime, proxy, settings)
    queue.sent.clear()


# -- the histogram table and its store ---------------------------------------------------


@pytest.mark.parametrize(("value", "bucket"), [
    (0.0, "0.1"), (0.1, "0.1"), (0.10001, "1.0"), (1.0, "1.0"), (9.9, "10.0"),
    (10.0, "10.0"), (10.5, "+Inf"), (1e9, "+Inf")])
def test_an_observation_counts_in_the_smallest_bucket_whose_bound_it_does_not_exceed(
        value, bucket):
    assert SMALL.bucket(value) == bucket


def test_observations_from_several_processes_add_up_in_one_histogram(store):
    other_process = MetricsStore(store.redis)  # another gunicorn or Celery worker
    store.metrics.observe(SMALL, 0.05, "cold")
    other_process.observe(SMALL, 0.5, "cold")
    other_process.observe(SMALL, 0.7, "cold")
    store.metrics.observe(SMALL, 50.0, "pooled")
    found = store.metrics.histogram(SMALL)
    assert found[("cold",)].buckets == {"0.1": 1, "1.0": 2}
    assert found[("cold",)].sum == pytest.approx(1.25)
    assert found[("pooled",)].buckets == {"+Inf": 1}
    assert cumulative_buckets(SMALL, found[("cold",)].buckets) == [
        ("0.1", 1), ("1.0", 3), ("10.0", 3), ("+Inf", 3)]


def test_an_observation_is_one_round_trip_of_two_commands(store):
    sent = []
    real_pipeline = store.redis.pipeline

    def counting_pipeline(*args, **kwargs):
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute
        pipe.execute = lambda: sent.append(len(pipe.command_stack)) or real_execute()
        return pipe

    store.redis.pipeline = counting_pipeline
    store.metrics.observe(LAUNCH_SECONDS, 0.004, "pooled")
    assert sent == [2]


def test_a_bound_no_longer_in_the_table_counts_in_inf_only():
    assert cumulative_buckets(SMALL, {"0.1": 1, "0.5": 4, "+Inf": 1})[-2:] == [
        ("10.0", 1), ("+Inf", 6)]


# -- /metrics ----------------------------------------------------------------------------


def test_metrics_need_the_operator_token(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "token wrong"}).status_code == 401


def test_a_pooled_launch_is_in_the_pooled_histogram_and_the_pool_figures(
        pooled, client, store):
    before = scrape(client)
    assert launches(before, "pooled") == 0
    assert client.post("/api/stagings/demo/servers", headers=OPERATOR).status_code == 201
    after = scrape(client)
    assert launches(after, "pooled") == 1
    assert after["binderq_launch_duration_seconds_sum"][(("kind", "pooled"),)] < 5
    inf = (("kind", "pooled"), ("le", "+Inf"))
    assert after["binderq_launch_duration_seconds_bucket"][inf] == 1
    assert after["binderq_pool_hits_total"][(("staging", "demo"),)] == 1
    assert after["binderq_pool_size"][(("staging", "demo"),)] == 2
    assert after["binderq_pool_in_use"][(("staging", "demo"),)] == 1
    assert after["binderq_servers"][(("status", "ready"),)] == 2
    assert after["binderq_servers_capacity"][()] == 5


def test_a_cold_launch_is_in_the_cold_histogram_from_its_request_to_ready(
        store, queue, runtime, proxy, settings, client):
    ready_staging(store, queue, runtime)
    launch, server = launch_now(store, queue, runtime, proxy, settings)
    assert server.status == ServerStatus.READY
    counts = store.metrics.histogram(LAUNCH_SECONDS)
    assert list(counts) == [("cold",)]
    expected = (server.ready_at - server.created_at).total_seconds()
    assert counts[("cold",)].sum == pytest.approx(expected)
    assert launches(scrape(client), "cold") == 1


def test_servers_started_for_a_pool_are_not_launches(pooled, store):
    assert store.metrics.histogram(LAUNCH_SECONDS) == {}


def test_queue_depths_are_the_lengths_of_the_celery_queues(store, client):
    store.redis.lpush("launches.local", "m1", "m2")
    store.redis.lpush("builds", "m3")
    depths = scrape(client)["binderq_queue_depth"]
    assert depths == {(("queue", "launches.local"),): 2, (("queue", "builds"),): 1,
                      (("queue", "maintenance"),): 0}


def test_culls_are_counted(store, queue, runtime, proxy, settings, client):
    ready_staging(store, queue, runtime, cull_timeout=60)
    _, server = launch_now(store, queue, runtime, proxy, settings)
    past = utcnow() - timedelta(seconds=120)
    store.servers.transition(server.id, [ServerStatus.READY], last_activity=past,
                             ready_at=past)
    lifecycle.cull_idle_servers(store=store, proxy=proxy, queue=queue,
                                activity_of=lambda _server: None)
    assert store.metrics.counter(CULLS) == 1
    assert scrape(client)["binderq_culls_total"][()] == 1


def test_builds_in_progress_and_finished_build_durations(store, queue, settings, client):
    git, builder = FakeGit(files={"Dockerfile": b"FROM base\nRUN false\n"}), FakeBuilder()
    build = request_build("https://h.test/r", "main", None, caller=OPERATOR_CALLER,
                          store=store, queue=queue, git=git, settings=settings)
    assert scrape(client)["binderq_builds_in_progress"] == {(("status", "queued"),): 1}
    done = run_build(build.id, store=store, git=git, builder=builder, queue=queue,
                     settings=settings)
    assert done.status == BuildStatus.FAILED
    counts = store.metrics.histogram(BUILD_SECONDS)
    assert list(counts) == [("failed",)]
    expected = (done.finished_at - done.started_at).total_seconds()
    assert counts[("failed",)].sum == pytest.approx(expected)
    samples = scrape(client)
    assert samples.get("binderq_builds_in_progress", {}) == {}
    assert samples["binderq_build_duration_seconds_count"][(("status", "failed"),)] == 1


def test_a_claimed_server_reaches_its_client_even_if_its_observation_cannot_be_written(
        pooled, store, queue, settings):
    def redis_gone(*_args):
        raise DependencyDown("Redis", "gone")

    store.metrics.observe = redis_gone
    launched = deploy.launch("demo", caller=OPERATOR_CALLER, store=store, queue=queue,
                             settings=settings)
    assert launched.server.pooled and launched.token


def test_the_collector_exports_exactly_the_series_the_table_names(
        pooled, store, queue, settings, client):
    client.post("/api/stagings/demo/servers", headers=OPERATOR)  # pooled
    store.metrics.observe(LAUNCH_SECONDS, 3.0, "cold")
    store.metrics.observe(BUILD_SECONDS, 30.0, "succeeded")
    store.metrics.count(CULLS)
    store.redis.lpush("builds", "m")
    request_build("https://h.test/r", "main", None, caller=OPERATOR_CALLER, store=store,
                  queue=queue, git=FakeGit(files={}), settings=settings)
    assert set(scrape(client)) == exported_names()
