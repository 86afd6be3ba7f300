"""The store against a real redis-server: its Lua scripts and atomicity under threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from binderq.adapters.redis_store import Keys, RedisStore
from binderq.domain.errors import CapacityExceeded, DependencyDown
from binderq.domain.models import Server, ServerStatus, Staging, StagingStatus


def _server(server_id: str) -> Server:
    return Server(id=server_id, staging="demo", staging_version=1)


def test_concurrent_reservations_never_exceed_capacity(store):
    def reserve(index: int) -> bool:
        try:
            store.servers.reserve(_server(f"s{index}"), max_servers=10)
            return True
        except CapacityExceeded:
            return False

    with ThreadPoolExecutor(max_workers=16) as pool:
        granted = list(pool.map(reserve, range(100)))
    assert sum(granted) == 10
    assert store.servers.active_count() == 10
    assert len(store.servers.list()) == 10


def test_concurrent_transitions_from_one_status_succeed_exactly_once(store):
    store.servers.reserve(_server("a"), max_servers=5)
    store.servers.transition("a", [ServerStatus.PENDING], status=ServerStatus.STARTING)

    def finish(_: int):
        return store.servers.transition("a", [ServerStatus.STARTING], status=ServerStatus.READY)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(finish, range(32)))
    assert sum(result is not None for result in results) == 1
    assert store.servers.get("a").status == ServerStatus.READY


def test_terminal_servers_expire_and_free_capacity(store):
    store.servers.reserve(_server("a"), max_servers=1)
    store.servers.transition("a", [ServerStatus.PENDING], status=ServerStatus.STOPPED)
    assert store.redis.ttl(Keys.SERVER.format(id="a")) > 0
    store.servers.reserve(_server("b"), max_servers=1)


def test_staging_versions_only_move_forward(store):
    first = store.stagings.next_version("demo")
    second = store.stagings.next_version("demo")
    assert second > first
    store.stagings.save(Staging(name="demo", image="new", version=second))
    assert not store.stagings.save(Staging(name="demo", image="old", version=first))
    assert not store.stagings.finish("demo", first, status=str(StagingStatus.READY))
    assert store.stagings.finish("demo", second, status=str(StagingStatus.READY))
    staging = store.stagings.get("demo")
    assert (staging.image, staging.status) == ("new", StagingStatus.READY)
    assert staging.services == [] and staging.env == {}


def test_an_unreachable_redis_is_a_dependency_error():
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    with pytest.raises(DependencyDown, match="Redis"):
        RedisStore(client).servers.get("a")


def test_concurrent_claims_hand_out_each_pooled_server_once(store):
    from binderq.domain.models import utcnow

    store.stagings.save(Staging(name="demo", image="img", version=1,
                                status=StagingStatus.READY))
    store.pools.set_size("demo", 20)
    for index in range(20):
        server = Server(id=f"p{index}", staging="demo", staging_version=1, pooled=True,
                        status=ServerStatus.STARTING)
        store.servers.reserve(server, max_servers=100)
        assert store.servers.mark_ready(server, url="u", target="t")

    def claim(_: int):
        claimed = store.pools.claim("demo", claimed_at=utcnow())
        return claimed.server.id if claimed else None

    with ThreadPoolExecutor(max_workers=32) as pool:
        claimed = [server_id for server_id in pool.map(claim, range(200)) if server_id]
    assert sorted(claimed) == sorted(f"p{index}" for index in range(20))
    assert store.pools.counters("demo") == {"size": 20, "hits": 20, "misses": 180}


def test_a_final_build_is_never_changed_again_and_only_real_moves_are_logged(store):
    from binderq.domain.builds import Build, BuildStatus

    store.builds.save(Build(id="b1", repo="r", ref="main", commit="c" * 40))
    assert store.builds.move("b1", BuildStatus.BUILDING, "building").status == \
        BuildStatus.BUILDING
    assert store.builds.move("b1", BuildStatus.CANCELLED, "cancelled").status == \
        BuildStatus.CANCELLED
    assert store.builds.move("b1", BuildStatus.SUCCEEDED, "built", image="x") is None
    build = store.builds.get("b1")
    assert (build.status, build.image) == (BuildStatus.CANCELLED, None)
    assert [entry["phase"] for _, entry in store.builds.log("b1")] == ["building", "cancelled"]
    assert store.builds.move("missing", BuildStatus.BUILDING, "building") is None
    assert store.builds.log("missing") == []


def test_builds_in_progress_are_counted_up_to_the_limit_and_leave_when_final(store):
    from binderq.domain.builds import Build, BuildStatus

    for build_id in ("a", "b", "c"):
        store.builds.save(Build(id=build_id, repo="r", ref="main", commit="c" * 40))
    assert store.builds.admit("a", limit=2) is None
    assert store.builds.admit("b", limit=2) is None
    assert store.builds.admit("c", limit=2) == 2
    store.builds.move("a", BuildStatus.FAILED, "failed")
    assert store.builds.admit("c", limit=2) is None
    store.builds.forget("b")
    assert store.builds.admit("d", limit=2) is None  # b's place came back with its record


def test_stagings_are_added_to_a_build_only_until_it_is_final(store):
    from binderq.domain.builds import Build, BuildStatus

    store.builds.save(Build(id="b", repo="r", ref="main", commit="c" * 40))
    assert store.builds.admit("b", limit=5) is None
    assert store.builds.add_staging("b", {"name": "one", "pool_size": 2}) is True
    assert [build.id for build in store.builds.in_progress()] == ["b"]
    store.builds.move("b", BuildStatus.SUCCEEDED, "built", image="img")
    assert store.builds.add_staging("b", {"name": "late"}) is False
    assert store.builds.stagings("b") == [{"name": "one", "pool_size": 2}]
    assert store.builds.in_progress() == []
    store.builds.forget("b")
    assert store.builds.stagings("b") == []
