"""Pools with fake adapters: claim, rollover, upkeep, and the pool API's contract."""

from __future__ import annotations

import pytest

from binderq.adapters.redis_store import Keys
from binderq.domain.errors import Conflict
from binderq.domain.models import ServerStatus
from binderq.domain.tokens import server_token
from binderq.services import deploy, pools, stagings
from tests.helpers import IMAGE, assert_error_format, ready_staging, run_queued_launches
from tests.unit.conftest import OPERATOR


def _fill(store, queue, runtime, proxy, settings, size):
    """Set the pool size, run upkeep, and run every launch it queued."""
    pools.set_pool_size("demo", size, store=store, queue=queue, settings=settings)
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue, settings=settings)
    run_queued_launches(store, queue, runtime, proxy, settings)
    queue.sent.clear()


@pytest.fixture
def pooled(store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime)
    _fill(store, queue, runtime, proxy, settings, 2)
    return pools.get_pool("demo", store=store)


def test_upkeep_fills_the_pool_with_routed_ready_servers(pooled, store, proxy):
    assert (pooled.size, pooled.ready, pooled.starting, pooled.in_use) == (2, 2, 0, 0)
    assert store.pools.ready_count("demo") == 2
    assert len(proxy.routes_) == 2


def test_a_claim_hands_out_a_ready_server_once_and_queues_a_replenish(
        pooled, store, queue, settings):
    first = deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    second = deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    assert first.server.id != second.server.id
    assert first.server.pooled and first.server.status == ServerStatus.READY
    assert first.token == server_token(settings.secret_key, first.server.id)
    assert first.server.claimed_at and first.server.cull_at > first.server.claimed_at
    assert queue.names().count("binderq.pools.replenish") == 1  # the second was deduplicated
    cold = deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    assert not cold.server.pooled and cold.server.status == ServerStatus.PENDING
    pool = pools.get_pool("demo", store=store)
    assert (pool.hits, pool.misses, pool.in_use, pool.ready) == (2, 1, 2, 0)


def test_the_idle_clock_of_a_pooled_server_starts_at_its_claim(pooled, store, queue, settings):
    (waiting,) = [s for s in store.servers.active()][:1]
    assert waiting.last_activity is None and waiting.cull_at is None
    launch = deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    assert launch.server.last_activity == launch.server.claimed_at


def test_after_a_staging_changes_no_old_server_is_handed_out(pooled, store, queue, runtime,
                                                              proxy, settings):
    stagings.put_staging("demo", {"image": IMAGE, "env": {"V": "2"}}, store=store, queue=queue)
    assert "binderq.pools.replenish" in queue.names()
    with pytest.raises(Conflict, match="not ready yet"):
        deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    stagings.stage("demo", store.stagings.get("demo").version, store=store, runtime=runtime)
    _fill(store, queue, runtime, proxy, settings, 2)
    version = store.stagings.get("demo").version
    launch = deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    assert launch.server.pooled and launch.server.staging_version == version
    old = [s for s in store.servers.list() if s.staging_version != version]
    assert len(old) == 2 and all(s.status == ServerStatus.STOPPING for s in old)


def test_upkeep_retires_a_dead_pooled_server_and_never_hands_it_out(
        pooled, store, queue, runtime, proxy, settings):
    dead_id = store.redis.lindex(Keys.POOL_READY.format(staging="demo"), 0).decode()
    del runtime.containers[f"unit-{dead_id}"]
    plan = pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue,
                                settings=settings)
    assert plan.retire == {dead_id: "retired from the pool: its container is not running"}
    assert plan.start == 1 and "binderq.servers.stop" in queue.names()
    claimed = deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    assert claimed.server.id != dead_id


def test_overlapping_upkeep_marks_the_pool_dirty_and_the_holder_runs_again(
        pooled, store, queue, runtime, settings):
    assert store.locks.acquire("pool:demo", "someone-else", 60)
    assert pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue,
                                settings=settings) is None
    assert store.pools.take_dirty("demo")  # the holder would run again


def test_a_claimed_server_is_never_retired(pooled, store, queue, settings):
    launch = deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    assert not store.pools.retire(launch.server, "test")
    assert store.servers.get(launch.server.id).status == ServerStatus.READY


def test_draining_stops_unclaimed_servers_only(pooled, store, queue, settings):
    launch = deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    pool = pools.drain_pool("demo", store=store, queue=queue)
    assert (pool.size, pool.ready, pool.in_use) == (0, 0, 1)
    assert store.servers.get(launch.server.id).status == ServerStatus.READY
    assert queue.names().count("binderq.servers.stop") == 1


def test_deleting_a_staging_drains_its_pool_without_needing_force(pooled, store, queue):
    deploy.delete_staging("demo", force=False, store=store, queue=queue)
    assert store.pools.counters("demo") is None
    assert all(s.status == ServerStatus.STOPPING for s in store.servers.active())



def test_a_server_started_while_its_staging_is_deleted_does_not_outlive_it(
        store, queue, runtime, proxy, settings, monkeypatch):
    """Upkeep may see the staging, reserve a server and launch it while the delete runs:
    that server must be retired, not left ready in a pool nobody looks after."""
    ready_staging(store, queue, runtime)
    pools.set_pool_size("demo", 1, store=store, queue=queue, settings=settings)
    forget = store.pools.forget

    def upkeep_during_the_delete(name):
        pools.replenish_pool(name, store=store, runtime=runtime, queue=queue,
                             settings=settings)
        run_queued_launches(store, queue, runtime, proxy, settings)
        forget(name)

    monkeypatch.setattr(store.pools, "forget", upkeep_during_the_delete)
    deploy.delete_staging("demo", force=False, store=store, queue=queue)
    (started,) = store.servers.active()
    assert started.status == ServerStatus.STOPPING


def test_upkeep_retires_pooled_servers_whose_pool_is_gone(pooled, store, queue, runtime,
                                                          settings):
    store.pools.forget("demo")
    store.stagings.delete("demo")
    pools.upkeep_all_pools(store=store, runtime=runtime, queue=queue, settings=settings)
    assert [s.status for s in store.servers.active()] == [ServerStatus.STOPPING] * 2
    assert queue.names().count("binderq.servers.stop") == 2


# -- the API --------------------------------------------------------------------------------


def test_put_pool_answers_the_pool_and_queues_upkeep(client, store, runtime, queue):
    ready_staging(store, queue, runtime)
    response = client.put("/api/pools/demo", json={"size": 3}, headers=OPERATOR)
    assert response.status_code == 200
    assert response.get_json() == {"staging": "demo", "size": 3, "ready": 0, "starting": 0,
                                   "in_use": 0, "hits": 0, "misses": 0}
    assert "binderq.pools.replenish" in queue.names()
    assert client.get("/api/pools", headers=OPERATOR).get_json()[0]["size"] == 3


@pytest.mark.parametrize("body", [{"size": -1}, {"size": "ten"}, {"size": "3"}, {},
                                  {"size": 1.5}, {"size": 2, "extra": 1}])
def test_bad_pool_sizes_are_422(client, store, runtime, queue, body):
    ready_staging(store, queue, runtime)
    assert_error_format(client.put("/api/pools/demo", json=body, headers=OPERATOR), 422)
    assert store.pools.counters("demo") is None


def test_a_pool_larger_than_capacity_is_refused_saying_so(client, store, runtime, queue):
    ready_staging(store, queue, runtime)
    response = client.put("/api/pools/demo", json={"size": 10**6}, headers=OPERATOR)
    body = assert_error_format(response, 422)
    assert "capacity" in body["errors"][0]["message"]
    assert "BINDERQ_MAX_SERVERS" in body["errors"][0]["message"]


def test_pools_of_unknown_stagings_are_404(client):
    assert_error_format(client.put("/api/pools/nope", json={"size": 1}, headers=OPERATOR), 404)
    assert_error_format(client.get("/api/pools/nope", headers=OPERATOR), 404)
    assert_error_format(client.delete("/api/pools/nope", headers=OPERATOR), 404)


def test_pools_need_the_operator(client, store, runtime, queue):
    ready_staging(store, queue, runtime)
    assert_error_format(client.put("/api/pools/demo", json={"size": 1}), 401)


def test_a_pooled_launch_answers_201_ready_with_url_and_token(
        pooled, client, settings):
    response = client.post("/api/stagings/demo/servers", headers=OPERATOR)
    assert response.status_code == 201
    body = response.get_json()
    assert body["pooled"] is True and body["status"] == "ready"
    assert body["url"] == f"http://binderq.test/user/{body['id']}/"
    assert body["token"] == server_token(settings.secret_key, body["id"])


def test_metrics_show_pool_figures_in_prometheus_format(pooled, client):
    client.post("/api/stagings/demo/servers", headers=OPERATOR)
    text = client.get("/metrics", headers=OPERATOR).get_data(as_text=True)
    assert 'binderq_pool_hits_total{staging="demo"} 1' in text
    assert 'binderq_pool_size{staging="demo"} 2' in text
    assert "# TYPE binderq_pool_misses_total counter" in text
    assert client.get("/metrics").status_code == 401


# -- the tmpnb door -------------------------------------------------------------------------


@pytest.fixture
def tmpnb_client(app, settings, store, queue, proxy):
    from binderq.api.context import ApiContext

    app.extensions["binderq"] = ApiContext(
        settings=settings.with_changes(default_staging="demo", launch_auth="open"),
        store=store, queue=queue, proxy=proxy)
    return app.test_client()


def test_tmpnb_spawn_hands_out_pooled_servers_then_says_full(
        store, queue, runtime, proxy, settings, tmpnb_client):
    ready_staging(store, queue, runtime, public=True)
    _fill(store, queue, runtime, proxy, settings, 1)
    stats = tmpnb_client.get("/api/stats").get_json()
    assert stats["available"] == 1 and stats["capacity"] == 1
    assert stats["container_image"] == IMAGE and stats["version"]
    spawned = tmpnb_client.post("/api/spawn/")
    assert spawned.status_code == 200
    url = spawned.get_json()["url"]
    assert url.startswith("/user/") and "?token=" in url
    full = tmpnb_client.post("/api/spawn")
    assert full.status_code == 429 and full.get_json() == {"status": "full"}
    assert tmpnb_client.get("/api/stats").get_json()["available"] == 0


def test_tmpnb_door_without_a_default_staging_is_404(client):
    assert_error_format(client.post("/api/spawn/"), 404)


def test_failing_pooled_launches_slow_the_pool_to_one_at_a_time(store, queue, runtime, proxy,
                                                                settings):
    ready_staging(store, queue, runtime)
    runtime.fail_start = "Docker refused container"
    _fill(store, queue, runtime, proxy, settings, 4)  # all four fail
    assert store.pools.recent_failures("demo") == 4
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue, settings=settings)
    assert queue.names().count("binderq.servers.launch") == 1


def test_a_process_copy_of_a_staging_made_private_no_longer_lets_anyone_launch(
        app, store, queue, runtime, proxy, settings):
    from binderq.api.context import ApiContext

    app.extensions["binderq"] = ApiContext(settings=settings.with_changes(launch_auth="open"),
                                           store=store, queue=queue, proxy=proxy)
    client = app.test_client()
    ready_staging(store, queue, runtime, public=True)
    _fill(store, queue, runtime, proxy, settings, 2)
    assert client.post("/api/stagings/demo/servers").status_code == 201  # now cached public
    ready_staging(store, queue, runtime, public=False)
    assert client.post("/api/stagings/demo/servers").status_code == 401
    assert store.pools.counters("demo")["hits"] == 1


def test_a_stale_copy_is_refused_by_the_claim_itself(pooled, store, queue, settings):
    from binderq.domain.errors import StaleStaging

    cached = store.stagings.get("demo")
    stagings.put_staging("demo", {"image": IMAGE, "env": {"V": "2"}}, store=store, queue=queue)
    with pytest.raises(StaleStaging):
        pools.claim_from_pool(cached, store=store, queue=queue, settings=settings)
    assert store.pools.ready_count("demo") == 2  # nothing was taken


def test_after_a_staging_change_the_old_servers_do_not_count_as_ready(pooled, store, queue):
    assert pools.get_pool("demo", store=store).ready == 2
    stagings.put_staging("demo", {"image": IMAGE, "env": {"V": "2"}}, store=store, queue=queue)
    assert pools.get_pool("demo", store=store).ready == 0
