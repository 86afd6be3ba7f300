"""A Docker host that stops proving its life: no new servers there, its pooled servers leave
their pools at once (upkeep refills them on the hosts that are up), and after a grace all its
servers are failed, naming it. Each host's reconcile judges only its own servers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from binderq.domain.hosts import HOST_LOSS_GRACE
from binderq.domain.models import Server, ServerStatus, utcnow
from binderq.services import deploy, pools, servers
from binderq.services.hosts import beat, running_servers, watch_hosts
from binderq.services.lifecycle import on_this_host, reconcile
from tests.fakes import FakeRuntime, answering_probe
from tests.helpers import ready_staging

TWO = "a=unix:///a.sock,b=unix:///b.sock"


@pytest.fixture
def two_hosts(settings):
    return settings.with_changes(docker_hosts=TWO, max_servers=10)


def _up(store, *names, running=()):
    for name in names:
        store.hosts.beat(name, running, at=utcnow(), ttl=15)


def _launched(store, queue, runtime, proxy, settings, count):
    launched = []
    for _ in range(count):
        launch = deploy.request_launch("demo", store=store, queue=queue, settings=settings)
        launched.append(servers.launch_server(launch.server.id, store=store, runtime=runtime,
                                              proxy=proxy, probe=answering_probe,
                                              settings=settings))
    return launched


def test_launches_alternate_between_live_hosts_and_avoid_a_down_one(
        store, queue, runtime, proxy, two_hosts):
    ready_staging(store, queue, runtime)
    _up(store, "a", "b")
    hosts = [s.host for s in _launched(store, queue, runtime, proxy, two_hosts, 4)]
    assert hosts == ["a", "b", "a", "b"]
    store.redis.delete("binderq:host:b:alive")
    hosts = [s.host for s in _launched(store, queue, runtime, proxy, two_hosts, 2)]
    assert hosts == ["a", "a"]


def test_each_launch_is_queued_to_its_hosts_queue(store, queue, runtime, two_hosts):
    ready_staging(store, queue, runtime)
    _up(store, "a", "b")
    first = deploy.request_launch("demo", store=store, queue=queue, settings=two_hosts)
    second = deploy.request_launch("demo", store=store, queue=queue, settings=two_hosts)
    assert queue.hosts[first.server.task_id] == "a"
    assert queue.hosts[second.server.task_id] == "b"


def test_a_down_host_loses_its_pooled_servers_at_once_and_all_after_the_grace(
        store, queue, runtime, proxy, two_hosts):
    ready_staging(store, queue, runtime)
    _up(store, "a", "b")
    in_use = _launched(store, queue, runtime, proxy, two_hosts, 2)  # a, b
    store.pools.set_size("demo", 2)
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue,
                         settings=two_hosts)
    pooled = [s for s in store.servers.active() if s.pooled]
    assert sorted(s.host for s in pooled) == ["a", "b"]  # a pool spans the hosts
    on_b = next(s for s in pooled if s.host == "b")
    store.hosts.beat("b", [], at=utcnow() - timedelta(seconds=30), ttl=15)
    store.redis.delete("binderq:host:b:alive")

    loss = watch_hosts(store=store, proxy=proxy, queue=queue, settings=two_hosts)
    assert loss.retired == [on_b.id] and loss.failed == []
    assert store.servers.get(on_b.id).status == ServerStatus.STOPPING
    assert queue.sent[-1][0] == "binderq.servers.stop" and queue.hosts[queue.sent[-1][2]] == "b"
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue,
                         settings=two_hosts)
    refill = [s for s in store.servers.active() if s.pooled and s.id != on_b.id
              and s.status == ServerStatus.PENDING]
    assert [s.host for s in refill] == ["a"]

    later = utcnow() + timedelta(seconds=HOST_LOSS_GRACE)
    loss = watch_hosts(store=store, proxy=proxy, queue=queue, settings=two_hosts, now=later)
    b_servers = {in_use[1].id, on_b.id}
    assert set(loss.failed) == b_servers
    for server_id in b_servers:
        server = store.servers.get(server_id)
        assert server.status == ServerStatus.FAILED
        assert server.error.startswith("host b is down: ")
    assert store.servers.get(in_use[0].id).status == ServerStatus.READY
    assert f"/user/{in_use[1].id}" not in proxy.routes()


def test_with_one_host_nothing_is_given_up(store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime)
    _launched(store, queue, runtime, proxy, settings, 1)
    later = utcnow() + timedelta(seconds=10 * HOST_LOSS_GRACE)
    loss = watch_hosts(store=store, proxy=proxy, queue=queue, settings=settings, now=later)
    assert (loss.down, loss.failed, loss.retired) == ({}, [], [])


def test_a_beat_records_the_running_notebooks_and_an_engine_down_writes_none(store):
    runtime = FakeRuntime()
    host = type("H", (), {"name": "a"})()
    assert beat(host, store=store, runtime=runtime)
    assert store.hosts.up(["a"]) == {"a"}
    store.redis.delete("binderq:host:a:alive")
    runtime.down = True
    assert not beat(host, store=store, runtime=runtime)
    assert store.hosts.up(["a"]) == set()


def test_upkeep_reads_running_servers_from_live_proofs(store, runtime, two_hosts):
    old = utcnow() - timedelta(seconds=60)
    seen = Server(id="seen", staging="d", staging_version=1, host="a", status_changed_at=old)
    new = Server(id="new", staging="d", staging_version=1, host="b",
                 status_changed_at=utcnow() + timedelta(seconds=1))
    gone = Server(id="gone", staging="d", staging_version=1, host="a", status_changed_at=old)
    store.hosts.beat("a", ["seen"], at=utcnow(), ttl=15)
    store.hosts.beat("b", [], at=utcnow(), ttl=15)
    assert running_servers([seen, new, gone], store=store, runtime=runtime,
                           settings=two_hosts) == {"seen", "new"}
    store.redis.delete("binderq:host:a:running")  # a is down: nothing runs there
    assert running_servers([seen, new, gone], store=store, runtime=runtime,
                           settings=two_hosts) == {"new"}


def test_each_hosts_reconcile_judges_its_servers_and_the_first_the_unknown_routes():
    servers = {"x": Server(id="x", staging="d", staging_version=1, host="a"),
               "y": Server(id="y", staging="d", staging_version=1, host="b"),
               "old": Server(id="old", staging="d", staging_version=1)}
    routes = {"/user/x", "/user/y", "/user/old", "/user/nobody", "/api"}
    mine, judged = on_this_host(servers, routes, host="b", first="a")
    assert set(mine) == {"y"} and judged == {"/user/y", "/api"}
    mine, judged = on_this_host(servers, routes, host="a", first="a")
    assert set(mine) == {"x", "old"} and judged == {"/user/x", "/user/old", "/user/nobody",
                                                    "/api"}


def test_a_hosts_reconcile_leaves_other_hosts_servers_and_adopts_onto_itself(
        store, queue, runtime, proxy, two_hosts):
    ready_staging(store, queue, runtime)
    _up(store, "a", "b")
    on_a, on_b = _launched(store, queue, runtime, proxy, two_hosts, 2)
    runtime_b = FakeRuntime(containers={k: v for k, v in runtime.containers.items()
                                        if v.server_id == on_b.id})
    store.redis.delete(f"binderq:server:{on_b.id}")  # Redis forgot it; b's engine has it
    store.redis.srem("binderq:servers", on_b.id)
    repairs = reconcile(store=store, runtime=runtime_b, proxy=proxy, queue=queue,
                        settings=two_hosts.with_changes(worker_host="b"), adopt=True)
    assert repairs.adopt == {on_b.id} and not repairs.remove_routes
    assert store.servers.get(on_b.id).host == "b"
    assert store.servers.get(on_a.id).status == ServerStatus.READY


def test_a_pooled_server_on_a_down_host_is_never_handed_out(
        store, queue, runtime, proxy, two_hosts):
    ready_staging(store, queue, runtime)
    _up(store, "a", "b")
    store.pools.set_size("demo", 2)
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue,
                         settings=two_hosts)
    for server in store.servers.active():
        servers.launch_server(server.id, store=store, runtime=runtime, proxy=proxy,
                              probe=answering_probe, settings=two_hosts)
    store.redis.delete("binderq:host:a:alive")  # a is down; upkeep has not seen it yet
    claims = [deploy.request_launch("demo", store=store, queue=queue, settings=two_hosts,
                                    cold=True) for _ in range(2)]
    assert claims[0].server.pooled and claims[0].server.host == "b"
    assert not claims[1].server.pooled and claims[1].server.host == "b"  # cold, on b


def test_a_queued_launch_is_placed_on_a_host_when_promoted(store, queue, runtime, two_hosts):
    """The launch queue's promotion places as reserve does: the host with room that is up."""
    from binderq.domain.shares import ClientShare
    from binderq.services import launch_queue

    settings = two_hosts.with_changes(docker_hosts="a=unix:///a;max=1,b=unix:///b;max=1")
    ready_staging(store, queue, runtime)
    _up(store, "a", "b")
    operator = ClientShare("operator")
    full = [deploy.request_launch("demo", store=store, queue=queue, settings=settings,
                                  share=operator).server for _ in range(2)]
    assert sorted(s.host for s in full) == ["a", "b"]
    waiting = deploy.request_launch("demo", store=store, queue=queue, settings=settings,
                                    share=operator, queue_when_full=True).server
    assert waiting.status == ServerStatus.QUEUED
    on_b = next(s for s in full if s.host == "b")
    store.servers.transition(on_b.id, [ServerStatus.PENDING], status=ServerStatus.STOPPED)
    assert launch_queue.serve_queue(store=store, queue=queue,
                                    settings=settings) == [waiting.id]
    assert store.servers.get(waiting.id).host == "b"
    assert store.servers.host_counts(settings.hosts) == {"a": 1, "b": 1}
