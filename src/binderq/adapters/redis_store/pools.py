"""Pools in Redis: each staging's counters, the list of its ready unclaimed servers, and the
marks that keep upkeep from running twice or being forgotten. The claim, the hot path of
every pooled launch, is one script."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from binderq.adapters.redis_store.common import (
    COUNT_HELD,
    Keys,
    decode,
    encode,
    lua_status_set,
    speaks_to_redis,
    text,
)
from binderq.domain.errors import StaleStaging
from binderq.domain.models import Server, jsonable, server_from_dict, utcnow
from binderq.domain.shares import CLIENT_SERVER_STATUSES, client_servers_quota


@dataclass(frozen=True)
class PoolClaim:
    server: Server
    # True when no replenish was queued for the pool: the claimant must queue one.
    queue_replenish: bool


# Claim a ready server from a pool, in one step: refuse if the caller checked another version
# of the staging than the current one ('stale'); pop a server, check it is ready, unclaimed
# and of the current version, stamp the claim, count the hit, and ask for upkeep (queue
# a replenish if none is queued, else mark the pool dirty). Returns {id, queue it?, fields}.
# Servers that fail the check stay out of the list for upkeep to retire. A miss is counted
# when the list runs dry. "Pooled and unclaimed" is domain.pools.is_pooled_unclaimed (pooled
# true, claimed_at null); tests/unit/test_store.py checks that they agree.
# A client at its share (ARGV[4] > 0 servers held, domain/shares.py) is refused ({'quota',
# held}) before anything is popped; a claimed server joins its client's set (KEYS[5]).
# With many hosts (ARGV[6], ARGV[7]: the prefix and suffix of a host's alive key), a server on
# a host that is down is passed over too (redis_store/hosts.py); it is watch_hosts' to retire.
_CLAIM = COUNT_HELD + f"""
local version = redis.call('HGET', KEYS[2], 'version')
if not version then return false end
if ARGV[3] ~= '' and ARGV[3] ~= version then return {{'stale'}} end
local client_limit = tonumber(ARGV[4])
if client_limit > 0 then
  local held = count_held(KEYS[5], {lua_status_set(CLIENT_SERVER_STATUSES)}, ARGV[1])
  if held >= client_limit then return {{'quota', held}} end
end
while true do
  local id = redis.call('LPOP', KEYS[1])
  if not id then
    if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HINCRBY', KEYS[3], 'misses', 1) end
    return false
  end
  local server = ARGV[1] .. id
  local fields = redis.call('HMGET', server, 'status', 'staging_version', 'pooled',
                           'claimed_at')
  local up = true
  if ARGV[6] ~= '' then
    local host = redis.call('HGET', server, 'host')
    if host and host ~= '""' then
      up = redis.call('EXISTS', ARGV[6] .. cjson.decode(host) .. ARGV[7]) == 1
    end
  end
  if fields[1] == '"ready"' and fields[2] == version and fields[3] == 'true'
      and fields[4] == 'null' and up then
    redis.call('HSET', server, unpack(ARGV, 8))
    if ARGV[5] == '1' then redis.call('SADD', KEYS[5], id) end
    redis.call('HINCRBY', KEYS[3], 'hits', 1)
    local queue_it = redis.call('SET', KEYS[4], 1, 'NX', 'EX', tonumber(ARGV[2]))
    return {{id, queue_it and 1 or 0, redis.call('HGETALL', server)}}
  end
end
"""

# Take an unclaimed server out of its pool and mark it stopping; never a claimed one.
# ARGV[3]: the time of the change.
_RETIRE = """
local fields = redis.call('HMGET', KEYS[2], 'status', 'claimed_at')
if fields[2] and fields[2] ~= 'null' then return 0 end
redis.call('LREM', KEYS[1], 0, ARGV[1])
local status = fields[1]
if status == '"pending"' or status == '"starting"' or status == '"ready"' then
  redis.call('HSET', KEYS[2], 'status', '"stopping"', 'error', ARGV[2],
             'status_changed_at', ARGV[3])
  return 1
end
return 0
"""


@speaks_to_redis
class PoolStore:
    """Each staging's pool: size, hits and misses, ready servers, upkeep marks."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._claim = client.register_script(_CLAIM)
        self._retire = client.register_script(_RETIRE)

    def set_size(self, staging: str, size: int) -> None:
        key = Keys.POOL.format(staging=staging)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, "size", size)
            pipe.hsetnx(key, "hits", 0)
            pipe.hsetnx(key, "misses", 0)
            pipe.sadd(Keys.POOLS, staging)
            pipe.execute()

    def counters(self, staging: str) -> dict[str, int] | None:
        """{size, hits, misses} of a staging's pool, or None when it has none."""
        raw = self.redis.hgetall(Keys.POOL.format(staging=staging))
        return {text(key): int(value) for key, value in raw.items()} if raw else None

    def names(self) -> list[str]:
        return sorted(text(name) for name in self.redis.smembers(Keys.POOLS))

    def forget(self, staging: str) -> None:
        keys = [template.format(staging=staging) for template in
                (Keys.POOL, Keys.POOL_READY, Keys.POOL_DIRTY, Keys.POOL_QUEUED,
                 Keys.POOL_FAILURES)]
        with self.redis.pipeline() as pipe:
            pipe.delete(*keys)
            pipe.srem(Keys.POOLS, staging)
            pipe.execute()

    def claim(self, staging: str, *, queued_ttl: int = 30,
              expected_version: int | None = None, client: str = "", client_limit: int = 0,
              hosts_checked: bool = False, **claim: Any) -> PoolClaim | None:
        """Atomically take a ready server of the staging's current version from its pool.

        One round trip, on the hot path of every pooled launch: the claim, the hit, the
        claimed server's record, and whether a replenish must be queued. With
        expected_version, StaleStaging if the staging is at another version now. The server
        is claimed for client, which must hold fewer than client_limit servers (0: no
        limit), else QuotaExceeded. hosts_checked (many hosts): servers on a host that is
        down are passed over.
        """
        keys = [Keys.POOL_READY.format(staging=staging), Keys.STAGING.format(name=staging),
                Keys.POOL.format(staging=staging), Keys.POOL_QUEUED.format(staging=staging),
                Keys.CLIENT_SERVERS.format(client=client)]
        expected = json.dumps(expected_version) if expected_version is not None else ""
        alive = Keys.HOST_ALIVE.split("{host}") if hosts_checked else ["", ""]
        args = [Keys.SERVER.format(id=""), queued_ttl, expected, client_limit,
                "1" if client else "0", *alive, *encode({**claim, "client": client})]
        claimed = self._claim(keys=keys, args=args)
        if not claimed:
            return None
        if text(claimed[0]) == "stale":
            raise StaleStaging(staging)
        if text(claimed[0]) == "quota":
            raise client_servers_quota(client_limit, int(claimed[1]))
        _, queue_replenish, flat = claimed
        record = decode(dict(zip(flat[::2], flat[1::2], strict=True)))
        return PoolClaim(server_from_dict(record), bool(queue_replenish))

    def retire(self, server: Server, reason: str) -> bool:
        """Take an unclaimed server out of its pool, marked stopping; False if claimed."""
        keys = [Keys.POOL_READY.format(staging=server.staging), Keys.SERVER.format(id=server.id)]
        now = json.dumps(jsonable(utcnow()))
        return bool(self._retire(keys=keys, args=[server.id, json.dumps(reason), now]))

    def ready_count(self, staging: str) -> int:
        return int(self.redis.llen(Keys.POOL_READY.format(staging=staging)))

    def mark_dirty(self, staging: str) -> None:
        self.redis.set(Keys.POOL_DIRTY.format(staging=staging), 1)

    def take_dirty(self, staging: str) -> bool:
        """Whether the pool was marked dirty since the last take; clears the mark."""
        return bool(self.redis.getdel(Keys.POOL_DIRTY.format(staging=staging)))

    def claim_replenish_slot(self, staging: str, ttl: int) -> bool:
        """True if no replenish is queued for the staging yet (and now one is)."""
        return bool(self.redis.set(Keys.POOL_QUEUED.format(staging=staging), 1, nx=True,
                                   ex=ttl))

    def release_replenish_slot(self, staging: str) -> None:
        self.redis.delete(Keys.POOL_QUEUED.format(staging=staging))

    def count_failure(self, staging: str, window: int) -> None:
        """One more failed pooled launch; the count forgets itself window seconds on."""
        key = Keys.POOL_FAILURES.format(staging=staging)
        with self.redis.pipeline() as pipe:
            pipe.set(key, 0, ex=window, nx=True)
            pipe.incr(key)
            pipe.execute()

    def recent_failures(self, staging: str) -> int:
        return int(self.redis.get(Keys.POOL_FAILURES.format(staging=staging)) or 0)
