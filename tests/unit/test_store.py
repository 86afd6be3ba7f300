"""The store's atomic scripts, run by fakeredis' Lua (the real Redis runs them in
tests/integration/test_redis_store.py)."""

from __future__ import annotations

from itertools import product

import pytest

from binderq.adapters.redis_store import Keys
from binderq.domain.errors import CapacityExceeded
from binderq.domain.models import Server, ServerStatus, Staging, StagingStatus, utcnow
from binderq.domain.pools import is_pooled_unclaimed


def _server(server_id: str) -> Server:
    return Server(id=server_id, staging="demo", staging_version=1)


def test_reserving_past_capacity_is_refused_and_writes_nothing(store):
    store.servers.reserve(_server("a"), max_servers=2)
    store.servers.reserve(_server("b"), max_servers=2)
    with pytest.raises(CapacityExceeded) as refused:
        store.servers.reserve(_server("c"), max_servers=2)
    assert (refused.value.limit, refused.value.used) == (2, 2)
    assert store.servers.get("c") is None
    assert store.servers.active_count() == 2


def test_a_transition_applies_only_from_an_allowed_status(store):
    store.servers.reserve(_server("a"), max_servers=5)
    assert store.servers.transition("a", [ServerStatus.READY], status=ServerStatus.STOPPING) \
        is None
    moved = store.servers.transition("a", [ServerStatus.PENDING], status=ServerStatus.STARTING,
                                     error="x")
    assert moved.status == ServerStatus.STARTING and moved.error == "x"
    assert store.servers.transition("missing", [ServerStatus.PENDING],
                                    status=ServerStatus.STARTING) is None


def test_a_terminal_status_frees_the_place_and_lets_the_record_expire(store):
    store.servers.reserve(_server("a"), max_servers=1)
    store.servers.transition("a", [ServerStatus.PENDING], status=ServerStatus.FAILED,
                             error="boom")
    assert store.servers.active_count() == 0
    assert 0 < store.redis.ttl(Keys.SERVER.format(id="a")) <= store.record_ttl
    store.servers.reserve(_server("b"), max_servers=1)  # the place is free again


def test_an_older_staging_version_never_overwrites_a_newer_one(store):
    newer = Staging(name="demo", image="new", version=store.stagings.next_version("demo") + 1)
    older = Staging(name="demo", image="old", version=newer.version - 1)
    assert store.stagings.save(newer)
    assert not store.stagings.save(older)
    assert store.stagings.get("demo").image == "new"


def test_finishing_a_replaced_staging_version_changes_nothing(store):
    store.stagings.save(Staging(name="demo", image="img", version=2))
    assert not store.stagings.finish("demo", 1, status=str(StagingStatus.READY))
    assert store.stagings.get("demo").status == StagingStatus.STAGING
    assert store.stagings.finish("demo", 2, status=str(StagingStatus.READY))
    assert store.stagings.get("demo").status == StagingStatus.READY


def test_listing_servers_forgets_expired_records(store):
    store.servers.reserve(_server("a"), max_servers=5)
    store.servers.reserve(_server("b"), max_servers=5)
    store.redis.delete(Keys.SERVER.format(id="a"))
    assert [server.id for server in store.servers.list()] == ["b"]
    assert store.redis.smembers(Keys.SERVERS) == {b"b"}


def test_the_claim_script_takes_exactly_what_is_pooled_unclaimed_accepts(store):
    """The claim's Lua mirrors domain.pools.is_pooled_unclaimed (plus ready, current version)."""
    store.stagings.save(Staging(name="demo", image="img", version=2))
    store.pools.set_size("demo", 1)
    combinations = product((True, False), (None, utcnow()), ServerStatus, (1, 2))
    table = [Server(id=f"s{i}", staging="demo", staging_version=version, status=status,
                    pooled=pooled, claimed_at=claimed_at)
             for i, (pooled, claimed_at, status, version) in enumerate(combinations)]
    for server in table:
        store.servers.adopt(server)
        store.redis.rpush(Keys.POOL_READY.format(staging="demo"), server.id)
    claimed = set()
    while (claim := store.pools.claim("demo", claimed_at=utcnow())) is not None:
        assert not is_pooled_unclaimed(claim.server)  # stamped: it can never be taken again
        claimed.add(claim.server.id)
    accepted = {server.id for server in table if is_pooled_unclaimed(server)
                and server.status == ServerStatus.READY and server.staging_version == 2}
    assert claimed == accepted
    assert store.pools.ready_count("demo") == 0
