"""Many Docker hosts: the setting, placement (pure rule and its Lua mirror in the reserve
script), and each server's launch and stop routed to its own host's queue."""

from __future__ import annotations

import itertools

import fakeredis
import pytest

from binderq.adapters.redis_store import RedisStore
from binderq.adapters.redis_store.common import Keys
from binderq.adapters.task_queue import CeleryTaskQueue
from binderq.domain.errors import CapacityExceeded, DependencyDown
from binderq.domain.hosts import Host, HostsError, parse_hosts, pick_host
from binderq.domain.models import Server, ServerStatus, utcnow
from binderq.settings import Settings, SettingsError
from binderq.tasks import LAUNCH, STOP
from binderq.workers.app import make_celery

A = Host("a", "unix:///a.sock", 2)
B = Host("b", "tcp://10.0.0.2:2376", 3)


def test_unset_is_one_host_named_local_on_docker_host_holding_the_service_capacity():
    settings = Settings(docker_host="unix:///x.sock", max_servers=7)
    assert settings.hosts == (Host("local", "unix:///x.sock", 7),)
    assert not settings.many_hosts


def test_hosts_are_parsed_with_their_capacity_and_sorted_by_name():
    hosts = parse_hosts("b=tcp://10.0.0.2:2376;max=3, a=unix:///a.sock", default_url="",
                        default_max=50)
    assert hosts == (Host("a", "unix:///a.sock", 50), Host("b", "tcp://10.0.0.2:2376", 3))


@pytest.mark.parametrize("spec, says", [
    ("a=unix:///s,a=tcp://h:1", "named twice"),
    ("A=unix:///s", "a-z, 0-9"),
    ("a=http://h:1", "unix:// or tcp://"),
    ("a=unix:///s;max=0", "max=N"),
    ("a=unix:///s;cpus=2", "max=N"),
    ("unix:///s", "name=url"),
])
def test_unusable_hosts_are_refused_naming_the_setting(spec, says):
    with pytest.raises(HostsError, match=says):
        parse_hosts(spec, default_url="", default_max=1)
    with pytest.raises(SettingsError, match=f"BINDERQ_DOCKER_HOSTS.*{says}"):
        Settings.from_env({"BINDERQ_DOCKER_HOSTS": spec}, secret_required=False)


def test_a_worker_host_must_be_one_of_the_hosts():
    with pytest.raises(SettingsError, match="BINDERQ_WORKER_HOST='c'"):
        Settings.from_env({"BINDERQ_DOCKER_HOSTS": "a=unix:///a,b=unix:///b",
                           "BINDERQ_WORKER_HOST": "c"}, secret_required=False)
    settings = Settings(docker_hosts="a=unix:///a,b=unix:///b", worker_host="b")
    assert settings.host().name == "b" and settings.host("a").url == "unix:///a"
    assert Settings(docker_hosts="b=unix:///b,a=unix:///a").host().name == "a"


@pytest.mark.parametrize("used, up, chosen, free", [
    ({}, None, "b", 3),                  # most free places
    ({"b": 1}, None, "a", 2),            # a tie goes to the first by name
    ({"b": 2}, None, "a", 2),
    ({"a": 2, "b": 3}, None, "a", 0),    # all full: free 0
    ({}, {"a"}, "a", 2),                 # only hosts that are up
    ({}, set(), None, 0),                # none up
])
def test_pick_host_takes_the_up_host_with_most_free_places(used, up, chosen, free):
    host, places = pick_host([B, A], used, up)
    assert (host.name if host else None, places) == (chosen, free)


def _server(server_id: str) -> Server:
    return Server(id=server_id, staging="demo", staging_version=1)


def _fill(store: RedisStore, host: str, count: int) -> None:
    for i in range(count):
        store.redis.sadd(Keys.HOST_SERVERS.format(host=host), f"{host}-{i}")


@pytest.mark.parametrize("used_a, used_b, up", [
    (a, b, up) for a, b in itertools.product(range(3), range(4))
    for up in (("a", "b"), ("a",), ("b",), ())])
def test_the_reserve_script_places_as_pick_host_decides(used_a, used_b, up):
    store = RedisStore(fakeredis.FakeRedis())
    _fill(store, "a", used_a)
    _fill(store, "b", used_b)
    for name in up:
        store.hosts.beat(name, [], at=utcnow(), ttl=15)
    expected, free = pick_host([A, B], {"a": used_a, "b": used_b}, set(up))
    server = _server("s1")
    if expected is None:
        with pytest.raises(DependencyDown, match="no host is up"):
            store.servers.reserve(server, 100, hosts=(A, B))
    elif free <= 0:
        with pytest.raises(CapacityExceeded):
            store.servers.reserve(server, 100, hosts=(A, B))
    else:
        assert store.servers.reserve(server, 100, hosts=(A, B)) == expected.name
        assert store.servers.get("s1").host == expected.name == server.host
        assert store.servers.host_counts((A, B))[expected.name] == \
            {"a": used_a, "b": used_b}[expected.name] + 1


def test_one_host_is_placed_on_without_a_proof_of_life_as_before_hosts():
    store = RedisStore(fakeredis.FakeRedis())
    only = Host("local", "", 5)
    assert store.servers.reserve(_server("s1"), 5, hosts=(only,)) == "local"


def test_the_service_capacity_still_applies_across_hosts():
    store = RedisStore(fakeredis.FakeRedis())
    for name in "ab":
        store.hosts.beat(name, [], at=utcnow(), ttl=15)
    store.servers.reserve(_server("s1"), 1, hosts=(A, B))
    with pytest.raises(CapacityExceeded) as refused:
        store.servers.reserve(_server("s2"), 1, hosts=(A, B))
    assert refused.value.limit == 1


def test_a_finished_server_frees_its_place_on_its_host():
    store = RedisStore(fakeredis.FakeRedis())
    store.hosts.beat("a", [], at=utcnow(), ttl=15)
    store.hosts.beat("b", [], at=utcnow(), ttl=15)
    for i in range(5):
        store.servers.reserve(_server(f"s{i}"), 100, hosts=(A, B))
    assert store.servers.host_counts((A, B)) == {"a": 2, "b": 3}
    with pytest.raises(CapacityExceeded):
        store.servers.reserve(_server("s5"), 100, hosts=(A, B))
    on_a = next(s for s in store.servers.active() if s.host == "a")
    store.servers.transition(on_a.id, [ServerStatus.PENDING], status=ServerStatus.FAILED)
    assert store.servers.host_counts((A, B)) == {"a": 1, "b": 3}
    assert store.servers.reserve(_server("s6"), 100, hosts=(A, B)) == "a"


def test_a_servers_launch_and_stop_go_to_its_own_hosts_queue():
    settings = Settings(redis_url="redis://127.0.0.1:1/0",
                        docker_hosts="a=unix:///a.sock,b=unix:///b.sock")
    app = make_celery(settings)
    app.conf.broker_url = "memory://"
    app.conf.result_backend = "cache+memory://"
    store = RedisStore(fakeredis.FakeRedis())
    store.hosts.beat("a", [], at=utcnow(), ttl=15)
    store.hosts.beat("b", [], at=utcnow(), ttl=15)
    store.servers.reserve(_server("s1"), 100, hosts=settings.hosts)  # a (a tie)
    store.servers.reserve(_server("s2"), 100, hosts=settings.hosts)  # b
    queue = CeleryTaskQueue(app, store)
    queue.enqueue(LAUNCH.name, "s2")
    queue.enqueue(STOP.name, "s1")
    queue.enqueue(LAUNCH.name, "old-record-without-host")
    waiting = {}
    with app.connection_for_read() as connection:
        for name in ("launches.a", "launches.b"):
            simple = connection.SimpleQueue(name, no_ack=True)
            while True:
                try:
                    message = simple.get(timeout=0.05)
                except simple.Empty:
                    break
                waiting.setdefault(name, []).append((message.headers["task"],
                                                     message.headers["argsrepr"]))
    assert waiting == {"launches.b": [(LAUNCH.name, "['s2']")],
                       "launches.a": [(STOP.name, "['s1']"),
                                      (LAUNCH.name, "['old-record-without-host']")]}
