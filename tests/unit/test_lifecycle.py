"""Culling and reconcile with fake adapters."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest

from binderq.adapters.redis_store import Keys, RedisStore
from binderq.domain.models import ServerStatus, utcnow
from binderq.domain.spec import LABEL_DEPLOYMENT, LABEL_EPOCH, deployment_id
from binderq.services import deploy, lifecycle, pools, servers
from binderq.tasks import CULL, RECONCILE
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
    assert adopted.image_id == running.image_id == "sha"  # what its container runs
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


# -- a notebook that answers badly costs only its own activity --------------------------


def _launch_three(store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime, cull_timeout=60)
    launched = [launch_now(store, queue, runtime, proxy, settings)[1] for _ in range(3)]
    for server in launched:
        _age_activity(store, server.id, 120)
    return launched


def test_a_probe_that_raises_or_claims_the_far_future_stops_no_cull_run(store, queue, runtime,
                                                                       proxy, settings):
    raising, liar, idle = _launch_three(store, queue, runtime, proxy, settings)

    def activity_of(server):
        if server.id == raising.id:
            raise ValueError("Expecting value: line 1 column 1 (char 0)")
        return datetime(9999, 12, 31, tzinfo=UTC) if server.id == liar.id else None

    culled = {cull.server_id for cull in lifecycle.cull_idle_servers(
        store=store, proxy=proxy, queue=queue, activity_of=activity_of)}
    assert culled == {raising.id, idle.id}  # the record says both were idle
    kept = store.servers.get(liar.id)
    assert kept.status == ServerStatus.READY
    assert kept.last_activity <= utcnow() and kept.cull_at <= utcnow() + timedelta(seconds=61)


def test_a_probe_that_hangs_costs_the_run_its_budget_only(store, queue, runtime, proxy,
                                                         settings, monkeypatch):
    hanging, _, idle = _launch_three(store, queue, runtime, proxy, settings)
    monkeypatch.setattr(lifecycle, "PROBE_BUDGET", 0.5)

    def activity_of(server):
        if server.id == hanging.id:
            time.sleep(3)
            return utcnow()
        return None

    started = time.monotonic()
    culled = lifecycle.cull_idle_servers(store=store, proxy=proxy, queue=queue,
                                         activity_of=activity_of)
    assert time.monotonic() - started < 2
    assert idle.id in {cull.server_id for cull in culled}


def test_a_run_holds_its_lock_as_long_as_its_task_may_run(running, store, proxy, queue):
    held = []

    def activity_of(server):
        held.append(store.redis.pttl(Keys.LOCK.format(name="cull")))
        return None

    culls = lifecycle.cull_idle_servers(store=store, proxy=proxy, queue=queue,
                                        activity_of=activity_of)
    assert culls == [] and held
    assert CULL.limits.hard * 1000 - 5000 < held[0] <= CULL.limits.hard * 1000
    assert lifecycle.lock_ttl(CULL) == CULL.limits.hard
    assert lifecycle.lock_ttl(RECONCILE) == RECONCILE.limits.hard


# -- Redis losing its data, and another deployment under the same instance name ---------


def test_a_servers_containers_say_which_deployment_made_them_and_in_which_epoch(
        running, store, runtime, settings):
    epoch, began = store.epochs.current()
    assert not began  # the launch began it
    for container in runtime.containers.values():
        assert container.labels[LABEL_EPOCH] == epoch
        assert container.labels[LABEL_DEPLOYMENT] == deployment_id(settings.secret_key,
                                                                   settings.redis_url)


def test_after_redis_is_wiped_reconcile_adopts_its_running_servers_unasked(
        running, store, runtime, proxy, queue, settings):
    assert settings.orphans == "remove"
    store.redis.flushdb()
    for _ in range(2):
        repairs = _reconcile(store, runtime, proxy, queue, settings)
        assert not repairs.remove_containers and not repairs.remove_routes
        adopted = store.servers.get(running.id)
        assert adopted.status == ServerStatus.READY and adopted.url == running.url
        assert {c.server_id for c in runtime.containers.values()} == {running.id}
        assert f"/user/{running.id}" in proxy.routes_
    assert store.epochs.current()[0] != runtime.containers[f"unit-{running.id}"].labels[
        LABEL_EPOCH]  # a new epoch: what the old one made stays recognisable


def test_another_deployment_neither_removes_nor_adopts_our_servers(running, runtime, proxy,
                                                                   queue, settings):
    theirs = settings.with_changes(redis_url="redis://10.0.0.9:6379/0")
    their_store = RedisStore(fakeredis.FakeRedis())
    for adopt in (None, True):
        repairs = _reconcile(their_store, runtime, proxy, queue, theirs, adopt=adopt)
        assert set(repairs.foreign) == {running.id}
        assert not repairs.remove_containers and not repairs.adopt
    assert {c.server_id for c in runtime.containers.values()} == {running.id}
    assert f"/user/{running.id}" in proxy.routes_
    assert their_store.servers.get(running.id) is None


def test_the_deployment_id_ignores_the_password_and_differs_by_redis_and_secret():
    same = deployment_id("k" * 32, "redis://:pw1@127.0.0.1:6390/0")
    assert same == deployment_id("k" * 32, "redis://:other@127.0.0.1:6390/0")
    assert same != deployment_id("k" * 32, "redis://:pw1@127.0.0.1:6391/0")
    assert same != deployment_id("k" * 32, "redis://:pw1@127.0.0.1:6390/1")
    assert same != deployment_id("j" * 32, "redis://:pw1@127.0.0.1:6390/0")
    assert "pw1" not in same


def test_the_epoch_is_begun_once(store):
    first, began = store.epochs.current()
    assert began and store.epochs.current() == (first, False)
    store.redis.flushdb()
    assert store.epochs.current()[0] != first


def test_a_redis_that_lost_its_epoch_gets_a_reconcile_at_the_next_upkeep(running, store,
                                                                         queue):
    store.epochs.current()
    assert not lifecycle.reconcile_if_redis_forgot(store=store, queue=queue)
    assert RECONCILE.name not in queue.names()
    store.redis.flushall()
    assert lifecycle.reconcile_if_redis_forgot(store=store, queue=queue)
    assert queue.names().count(RECONCILE.name) == 1
