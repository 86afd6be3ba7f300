"""Culling and reconcile with fake adapters."""

from __future__ import annotations

from datetime import timedelta

import pytest

from binderq.adapters.redis_store import Keys
from binderq.domain.models import ServerStatus, utcnow
from binderq.services import deploy, lifecycle, pools, servers
from tests.fakes import answering_probe
from tests.helpers import launch_now, ready_staging, run_queued_launches
from tests.unit.conftest import OPERATOR


@pytest.fixture
def running(store, queue, runtime, proxy, settings):
    """A ready staging (cull_timeout 60 s) and one cold server ready on it."""
    ready_staging(store, queue, runtime, cull_timeout=60)
    _, server = launch_now(store, queue, runtime, proxy, settings)
    return server


def _cull(store, proxy, queue, activity=None):
    return lifecycle.cull_idle_servers(store=store, proxy=proxy, queue=queue,
                                       activity_of=lambda server: activity)


def _age_activity(store, server_id, seconds):
    past = utcnow() - timedelta(seconds=seconds)
    store.servers.transition(server_id, [ServerStatus.READY], last_activity=past,
                             ready_at=past)


def test_an_idle_server_is_culled_once_and_stopped(running, store, proxy, queue):
    _age_activity(store, running.id, 120)
    assert [cull.server_id for cull in _cull(store, proxy, queue)] == [running.id]
    server = store.servers.get(running.id)
    assert server.status == ServerStatus.STOPPING and "idle" in server.error
    assert queue.names().count("binderq.servers.stop") == 1
    assert _cull(store, proxy, queue) == []  # never twice


def test_recent_notebook_activity_keeps_a_server_and_moves_its_cull_at(running, store, proxy,
                                                                      queue):
    _age_activity(store, running.id, 120)
    assert _cull(store, proxy, queue, activity=utcnow()) == []
    server = store.servers.get(running.id)
    assert server.status == ServerStatus.READY
    assert server.cull_at > utcnow() + timedelta(seconds=50)


def test_the_proxy_route_activity_counts_too(running, store, proxy, queue):
    _age_activity(store, running.id, 120)
    proxy.routes_[f"/user/{running.id}"]["last_activity"] = utcnow().isoformat()
    assert _cull(store, proxy, queue) == []


def test_a_culler_that_finds_the_lock_taken_culls_nothing(running, store, proxy, queue):
    _age_activity(store, running.id, 120)
    assert store.locks.acquire("cull", "other", 60)
    assert _cull(store, proxy, queue) == []
    assert store.servers.get(running.id).status == ServerStatus.READY


def _reconcile(store, runtime, proxy, queue, settings, adopt=None):
    return lifecycle.reconcile(store=store, runtime=runtime, proxy=proxy, queue=queue,
                               settings=settings, adopt=adopt)


def test_reconcile_routes_ready_servers_again_after_the_proxy_forgot(running, store, runtime,
                                                                    proxy, queue, settings):
    proxy.routes_.clear()
    repairs = _reconcile(store, runtime, proxy, queue, settings)
    assert repairs.add_routes == {running.id}
    assert proxy.routes_[f"/user/{running.id}"]["target"] == running.target


def test_reconcile_fails_a_server_whose_container_vanished(running, store, runtime, proxy,
                                                          queue, settings):
    runtime.containers.clear()
    _reconcile(store, runtime, proxy, queue, settings)
    server = store.servers.get(running.id)
    assert server.status == ServerStatus.FAILED and server.error == "its container is gone"
    assert proxy.routes_ == {} and store.servers.active_count() == 0


def test_reconcile_removes_unknown_containers_and_stale_routes(running, store, runtime, proxy,
                                                              queue, settings):
    store.redis.delete(Keys.SERVER.format(id=running.id))
    proxy.routes_["/user/ghost"] = {"target": "http://127.0.0.1:1"}
    repairs = _reconcile(store, runtime, proxy, queue, settings)
    assert running.id in repairs.remove_containers
    assert runtime.containers == {}
    assert "/user/ghost" not in proxy.routes_


def test_after_redis_is_wiped_adopt_rebuilds_the_servers_from_labels(
        running, store, runtime, proxy, queue, settings):
    store.redis.flushdb()
    proxy.routes_.clear()
    repairs = _reconcile(store, runtime, proxy, queue, settings, adopt=True)
    assert repairs.adopt == {running.id}
    adopted = store.servers.get(running.id)
    assert adopted.status == ServerStatus.READY and adopted.staging == "demo"
    assert adopted.url == running.url
    assert f"/user/{running.id}" in proxy.routes_
    assert store.servers.active_count() == 1


def test_an_adopted_pooled_server_is_taken_as_in_use_never_handed_out_again(
        store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime)
    pools.set_pool_size("demo", 1, store=store, queue=queue, settings=settings)
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue, settings=settings)
    (launch_id,) = run_queued_launches(store, queue, runtime, proxy, settings)
    store.redis.flushdb()
    _reconcile(store, runtime, proxy, queue, settings, adopt=True)
    assert store.servers.get(launch_id).claimed_at is not None
    assert store.pools.claim("demo") is None


def test_a_launch_that_keeps_dying_is_given_up_after_three_attempts(store, queue, runtime,
                                                                   proxy, settings):
    ready_staging(store, queue, runtime)
    launch = deploy.request_launch("demo", store=store, queue=queue, settings=settings)

    def dies(*args, **kwargs):
        raise SystemExit("worker killed")  # what the worker's death looks like to the task

    for _ in range(servers.MAX_LAUNCH_ATTEMPTS):
        with pytest.raises(SystemExit):
            servers.launch_server(launch.server.id, store=store, runtime=runtime, proxy=proxy,
                                  probe=dies, settings=settings)
    final = servers.launch_server(launch.server.id, store=store, runtime=runtime, proxy=proxy,
                                  probe=answering_probe, settings=settings)
    assert final.status == ServerStatus.FAILED and "gave up after 3 attempts" in final.error
    assert runtime.containers == {}


def test_reconcile_on_demand_is_queued_for_operators(client, queue):
    response = client.post("/api/reconcile?adopt=true", headers=OPERATOR)
    assert response.status_code == 202
    assert queue.sent[-1][:2] == ("binderq.maintenance.reconcile", (True,))
    assert client.post("/api/reconcile").status_code == 401
