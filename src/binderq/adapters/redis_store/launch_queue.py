"""The launch queue in Redis: launches waiting for room, in order of arrival, each promoted to
`pending` in the same step that reserves its place, so that concurrent promoters never
overfill capacity, skip an entry or promote one twice.

Keys: a sorted set of server ids scored by an arrival counter (INCR: the order Redis saw the
joins in), a hash of when each was last polled (unix seconds), and a short list of when the
latest promotions happened (for the eta). The records are the servers' own, status `queued`.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from binderq.adapters.redis_store.common import (
    COUNT_HELD,
    PICK_HOST,
    Keys,
    encode,
    host_placement,
    lua_status_set,
    speaks_to_redis,
    text,
)
from binderq.adapters.redis_store.servers import LOCAL
from binderq.domain.hosts import Host
from binderq.domain.launch_queue import ETA_SAMPLES, queue_full
from binderq.domain.models import ACTIVE_SERVER_STATUSES, Server, ServerStatus, to_dict
from binderq.domain.shares import CLIENT_SERVER_STATUSES, client_servers_quota

# Join the queue: refuse a client at its share (queued launches count in it) or a full
# queue; else write the queued server, count it its client's, and give it the next arrival.
# KEYS: server, every server, client's set, queue, polled, arrivals.
# ARGV: max queued, client limit, id, server key prefix, has a client, now, fields...
_JOIN = COUNT_HELD + f"""
local client_limit = tonumber(ARGV[2])
if client_limit > 0 then
  local held = count_held(KEYS[3], {lua_status_set(CLIENT_SERVER_STATUSES)}, ARGV[4])
  if held >= client_limit then return {{0, 'client', held}} end
end
local waiting = redis.call('ZCARD', KEYS[4])
if waiting >= tonumber(ARGV[1]) then return {{0, 'queue', waiting}} end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('SADD', KEYS[2], ARGV[3])
if ARGV[5] == '1' then redis.call('SADD', KEYS[3], ARGV[3]) end
redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[6]), ARGV[3])
redis.call('HSET', KEYS[5], ARGV[3], ARGV[6])
return {{1, '', redis.call('ZRANK', KEYS[4], ARGV[3]) + 1}}
"""

# Promote queued launches, oldest first, while the service has room: each one whose staging
# has room (its max_servers, counted as ServerStore's reserve counts it; none while it is
# being staged) goes `queued` -> `pending` and is counted active and its staging's, as
# reserve would have. An entry whose staging is full waits, and so do the later ones of that
# staging (first come, first served within it); later ones of other stagings may go. Entries
# no longer queued leave the set; unpolled ones (domain.launch_queue.is_unpolled) are
# skipped, for the service to drop. Returns the promoted ids.
# KEYS: queue, active servers, polled, promotions.
# ARGV: capacity, now, poll timeout, server key prefix, staging set prefix, staging key
# prefix, status_changed_at (JSON), promotions kept.
# Each promoted launch is placed on a host as reserve places it (PICK_HOST: ARGV[9], ARGV[10]
# and the hosts from ARGV[11]; their keys from KEYS[5]); when no host is up or has room,
# promotion stops there.
_PROMOTE = COUNT_HELD + PICK_HOST + f"""
local capacity = tonumber(ARGV[1])
local now, timeout = tonumber(ARGV[2]), tonumber(ARGV[3])
local used = redis.call('SCARD', KEYS[2])
local room, version, promoted = {{}}, {{}}, {{}}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if used >= capacity then break end
  local server = ARGV[4] .. id
  local fields = redis.call('HMGET', server, 'status', 'staging')
  if fields[1] ~= '"queued"' then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
  elseif now - tonumber(redis.call('HGET', KEYS[3], id) or '0') <= timeout then
    local staging = cjson.decode(fields[2])
    if room[staging] == nil then
      local record = redis.call('HMGET', ARGV[6] .. staging, 'status', 'max_servers', 'version')
      local limit = tonumber(record[2] or '') or 0
      version[staging] = record[3]
      if record[1] == '"staging"' then room[staging] = 0
      elseif limit > 0 then
        room[staging] = limit - count_held(ARGV[5] .. staging,
                                           {lua_status_set(ACTIVE_SERVER_STATUSES)}, ARGV[4])
      else room[staging] = capacity end
    end
    local host, host_free, host_set = nil, 0, nil
    if room[staging] > 0 then
      host, host_free, host_set = pick_host(tonumber(ARGV[9]), ARGV[10] == '1', 5, 11)
      if host == nil or host_free <= 0 then break end
    end
    if room[staging] > 0 then
      redis.call('HSET', server, 'status', '"pending"', 'status_changed_at', ARGV[7],
                 'host', cjson.encode(host))
      redis.call('PUBLISH', server .. ':status', '"pending"')
      redis.call('SADD', host_set, id)
      if version[staging] then redis.call('HSET', server, 'staging_version', version[staging]) end
      redis.call('SADD', KEYS[2], id)
      redis.call('SADD', ARGV[5] .. staging, id)
      redis.call('ZREM', KEYS[1], id)
      redis.call('HDEL', KEYS[3], id)
      redis.call('LPUSH', KEYS[4], ARGV[2])
      redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[8]) - 1)
      room[staging] = room[staging] - 1
      used = used + 1
      table.insert(promoted, id)
    end
  end
end
return promoted
"""

# A queued launch was polled: note when, and answer its position (None once it left).
_TOUCH = """
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank then return false end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return rank + 1
"""


@speaks_to_redis
class LaunchQueueStore:
    """Queued launches, first come first served."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._join = client.register_script(_JOIN)
        self._promote = client.register_script(_PROMOTE)
        self._touch = client.register_script(_TOUCH)

    def join(self, server: Server, *, max_queued: int, client_limit: int, now: float) -> int:
        """Write server as `queued` at the end of the queue; its position (1-based).
        QuotaExceeded if its client holds client_limit servers (queued ones included; 0: no
        limit) or max_queued launches wait already."""
        record = {**to_dict(server), "status": str(ServerStatus.QUEUED)}
        keys = [Keys.SERVER.format(id=server.id), Keys.SERVERS,
                Keys.CLIENT_SERVERS.format(client=server.client), Keys.LAUNCH_QUEUE,
                Keys.LAUNCH_QUEUE_POLLED, Keys.LAUNCH_QUEUE_ARRIVALS]
        args = [max_queued, client_limit, server.id, Keys.SERVER.format(id=""),
                "1" if server.client else "0", repr(now), *encode(record)]
        joined, limit, count = self._join(keys=keys, args=args)
        if joined:
            return int(count)
        if text(limit) == "client":
            raise client_servers_quota(client_limit, int(count))
        raise queue_full(max_queued, int(count))

    def promote(self, capacity: int, *, now: float, poll_timeout: float,
                changed_at: str, hosts: Sequence[Host] = (LOCAL,)) -> list[str]:
        """Move the oldest queued launches that fit to `pending`, reserving their places
        in the same step, each on a host as reserve places it; their ids, oldest first.
        changed_at: an ISO time."""
        host_keys, placement = host_placement(hosts)
        keys = [Keys.LAUNCH_QUEUE, Keys.ACTIVE_SERVERS, Keys.LAUNCH_QUEUE_POLLED,
                Keys.LAUNCH_QUEUE_PROMOTED, *host_keys]
        args = [capacity, repr(now), repr(poll_timeout), Keys.SERVER.format(id=""),
                Keys.STAGING_SERVERS.format(name=""), Keys.STAGING.format(name=""),
                encode({"at": changed_at})[1], ETA_SAMPLES, *placement]
        return [text(server_id) for server_id in self._promote(keys=keys, args=args)]

    def position(self, server_id: str, *, polled_at: float | None = None) -> int | None:
        """Its place in the queue (1 is next), None if it is not queued; polled_at, when
        given, is noted as the time it was last asked about."""
        keys = [Keys.LAUNCH_QUEUE, Keys.LAUNCH_QUEUE_POLLED]
        args = [server_id, "" if polled_at is None else repr(polled_at)]
        found = self._touch(keys=keys, args=args)
        return int(found) if found else None

    def polled(self) -> dict[str, float]:
        """When each queued launch was last polled, by id."""
        return {text(server_id): float(moment)
                for server_id, moment in self.redis.hgetall(Keys.LAUNCH_QUEUE_POLLED).items()}

    def forget(self, server_id: str) -> None:
        """Take an entry out of the queue (its record says why)."""
        with self.redis.pipeline() as pipe:
            pipe.zrem(Keys.LAUNCH_QUEUE, server_id)
            pipe.hdel(Keys.LAUNCH_QUEUE_POLLED, server_id)
            pipe.execute()

    def waiting(self) -> list[str]:
        """The queued ids, oldest first."""
        return [text(server_id) for server_id in self.redis.zrange(Keys.LAUNCH_QUEUE, 0, -1)]

    def length(self) -> int:
        return int(self.redis.zcard(Keys.LAUNCH_QUEUE))

    def promotions(self) -> list[float]:
        """When the latest promotions happened (unix seconds), newest first."""
        return [float(moment) for moment in self.redis.lrange(Keys.LAUNCH_QUEUE_PROMOTED, 0, -1)]
