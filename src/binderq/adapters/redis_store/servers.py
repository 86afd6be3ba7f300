"""Server records in Redis: capacity taken with the write, and every status change checked
against the status it leaves."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from binderq.adapters.redis_store.common import (
    COUNT_HELD,
    PICK_HOST,
    Keys,
    decode,
    encode,
    host_placement,
    lua_status_set,
    pairs,
    speaks_to_redis,
    text,
)
from binderq.domain.errors import CapacityExceeded, DependencyDown
from binderq.domain.hosts import DEFAULT_HOST, Host
from binderq.domain.models import (
    ACTIVE_SERVER_STATUSES,
    Server,
    ServerStatus,
    server_from_dict,
    to_dict,
    utcnow,
)
from binderq.domain.shares import (
    CLIENT_SERVER_STATUSES,
    client_servers_quota,
    staging_servers_quota,
)

# Without hosts given (tests, tools), one host with no capacity of its own.
LOCAL = Host(DEFAULT_HOST, "", 2**31)

# Reserve a place for a new server: refuse past the client's share, the staging's
# max_servers or the service's capacity (0: no limit; the first one reached is named); then
# place it on a host (domain/hosts.pick_host, mirrored here): of the hosts that are up (a live
# alive key; not asked with one host), the one with the most free places, the first by name on
# a tie; refuse when none is up or all are full. Else write it, with its host, and count it
# active, of its staging, of its client and of its host. The sets of a staging and a client
# count only what domain/shares.py says they hold, pruned as they are counted.
# ARGV: capacity, id, staging limit, client limit, server key prefix, has a client,
# number of hosts, ask whether hosts are up, (host name, host max) per host, fields...
# KEYS: server, active, servers, staging's, client's, (host's servers, host alive) per host.
_RESERVE_SERVER = COUNT_HELD + PICK_HOST + f"""
local client_limit = tonumber(ARGV[4])
if client_limit > 0 then
  local held = count_held(KEYS[5], {lua_status_set(CLIENT_SERVER_STATUSES)}, ARGV[5])
  if held >= client_limit then return {{0, 'client', held}} end
end
local staging_limit = tonumber(ARGV[3])
if staging_limit > 0 then
  local held = count_held(KEYS[4], {lua_status_set(ACTIVE_SERVER_STATUSES)}, ARGV[5])
  if held >= staging_limit then return {{0, 'staging', held}} end
end
local used = redis.call('SCARD', KEYS[2])
if used >= tonumber(ARGV[1]) then return {{0, 'service', used}} end
local hosts = tonumber(ARGV[7])
local best, best_free, best_set = pick_host(hosts, ARGV[8] == '1', 6, 9)
if best == nil then return {{0, 'hosts-down', 0}} end
if best_free <= 0 then return {{0, 'hosts', used}} end
local fields = 9 + 2 * hosts
redis.call('HSET', KEYS[1], unpack(ARGV, fields))
redis.call('HSET', KEYS[1], 'host', cjson.encode(best))
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('SADD', best_set, ARGV[2])
if ARGV[6] == '1' then redis.call('SADD', KEYS[5], ARGV[2]) end
return {{1, best, used + 1}}
"""

# Move a server between statuses only from an allowed one; a terminal status frees its place,
# in the service's count and in its staging's, client's and host's. ARGV[5], ARGV[6], ARGV[7]:
# the key prefixes of a staging's, a client's and a host's set of servers.
_TRANSITION_SERVER = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {-1, ''} end
local allowed = cjson.decode(ARGV[1])
local ok = false
for _, status in ipairs(allowed) do
  if status == current then ok = true end
end
if not ok then return {0, current} end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('PUBLISH', KEYS[1] .. ':status', redis.call('HGET', KEYS[1], 'status'))
if ARGV[2] == '1' then
  redis.call('SREM', KEYS[2], ARGV[4])
  local owner = redis.call('HMGET', KEYS[1], 'staging', 'client', 'host')
  if owner[1] then redis.call('SREM', ARGV[5] .. cjson.decode(owner[1]), ARGV[4]) end
  if owner[2] then redis.call('SREM', ARGV[6] .. cjson.decode(owner[2]), ARGV[4]) end
  if owner[3] then redis.call('SREM', ARGV[7] .. cjson.decode(owner[3]), ARGV[4]) end
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return {1, current}
"""

# Mark a starting server ready and, for a pooled one, put it in its pool's ready list.
_READY = """
if redis.call('HGET', KEYS[1], 'status') ~= '"starting"' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PUBLISH', KEYS[1] .. ':status', '"ready"')
if ARGV[2] == '1' then redis.call('RPUSH', KEYS[2], ARGV[1]) end
return 1
"""


@speaks_to_redis
class ServerStore:
    """Servers, by id, and the set of active ones that capacity counts."""

    def __init__(self, client: redis.Redis, *, record_ttl: int) -> None:
        self.redis = client
        self.record_ttl = record_ttl
        self._reserve = client.register_script(_RESERVE_SERVER)
        self._transition = client.register_script(_TRANSITION_SERVER)
        self._ready = client.register_script(_READY)

    def reserve(self, server: Server, max_servers: int, *, staging_limit: int = 0,
                client_limit: int = 0, hosts: Sequence[Host] = (LOCAL,)) -> str:
        """Write a new server if its client (server.client) holds fewer than client_limit,
        its staging fewer than staging_limit, and the service fewer than max_servers (0: no
        limit), placing it on the host of hosts with the most free places (domain/hosts.py);
        else QuotaExceeded naming the limit, CapacityExceeded, or DependencyDown when no
        host is up. Returns the host, also set on server."""
        keys = [Keys.SERVER.format(id=server.id), Keys.ACTIVE_SERVERS, Keys.SERVERS,
                Keys.STAGING_SERVERS.format(name=server.staging),
                Keys.CLIENT_SERVERS.format(client=server.client)]
        host_keys, placement = host_placement(hosts)
        keys += host_keys
        record = {key: value for key, value in to_dict(server).items() if key != "host"}
        args = [max_servers, server.id, staging_limit, client_limit, Keys.SERVER.format(id=""),
                "1" if server.client else "0", *placement, *encode(record)]
        written, limit, used = self._reserve(keys=keys, args=args)
        used, limit = int(used), text(limit)
        if written:
            server.host = limit
            return limit
        if limit == "client":
            raise client_servers_quota(client_limit, used)
        if limit == "staging":
            raise staging_servers_quota(server.staging, staging_limit, used)
        if limit == "hosts-down":
            raise DependencyDown("Docker hosts", "no host is up: none of "
                                 + ", ".join(host.name for host in hosts)
                                 + " has a worker whose engine answers")
        if limit == "hosts":
            raise CapacityExceeded(limit=min(max_servers, sum(h.max_servers for h in hosts)),
                                   used=used)
        raise CapacityExceeded(limit=max_servers, used=used)

    def host_counts(self, hosts: Sequence[Host]) -> dict[str, int]:
        """How many active servers each host holds."""
        with self.redis.pipeline() as pipe:
            for host in hosts:
                pipe.scard(Keys.HOST_SERVERS.format(host=host.name))
            counts = pipe.execute()
        return {host.name: int(count) for host, count in zip(hosts, counts, strict=True)}

    def host_of(self, server_id: str) -> str | None:
        """The host a server was placed on ("" for a record older than hosts), or None."""
        raw = self.redis.hget(Keys.SERVER.format(id=server_id), "host")
        if raw is None:
            return "" if self.redis.exists(Keys.SERVER.format(id=server_id)) else None
        return json.loads(raw)

    def status_changes(self, server_id: str) -> redis.client.PubSub:
        """A subscription to a server's status changes (Keys.SERVER_STATUS_CHANNEL): close
        it after use."""
        changes = self.redis.pubsub(ignore_subscribe_messages=True)
        changes.subscribe(Keys.SERVER_STATUS_CHANNEL.format(id=server_id))
        return changes

    def status_of(self, server_id: str) -> str | None:
        """A server's status alone (one HGET: a waiting request asks often), or None."""
        raw = self.redis.hget(Keys.SERVER.format(id=server_id), "status")
        return None if raw is None else json.loads(raw)

    def adopt(self, server: Server) -> None:
        """Write a server rebuilt from its container; capacity does not apply: it runs."""
        with self.redis.pipeline() as pipe:
            pipe.hset(Keys.SERVER.format(id=server.id), mapping=pairs(to_dict(server)))
            pipe.sadd(Keys.ACTIVE_SERVERS, server.id)
            pipe.sadd(Keys.SERVERS, server.id)
            pipe.sadd(Keys.STAGING_SERVERS.format(name=server.staging), server.id)
            if server.host:
                pipe.sadd(Keys.HOST_SERVERS.format(host=server.host), server.id)
            pipe.execute()

    def get(self, server_id: str) -> Server | None:
        raw = self.redis.hgetall(Keys.SERVER.format(id=server_id))
        return server_from_dict(decode(raw)) if raw else None

    def transition(
        self, server_id: str, allowed: Iterable[ServerStatus], **changes: Any
    ) -> Server | None:
        """Apply changes if the server's status is one of allowed; None if it is not.

        A change to a terminal status frees the server's place and lets the record expire.
        Returns None as well when the server is unknown.
        """
        status = changes.get("status")
        terminal = status is not None and ServerStatus(status).is_terminal
        if status is not None:
            changes = {"status_changed_at": utcnow(), **changes}
        args = [
            json.dumps([json.dumps(str(s)) for s in allowed]),
            "1" if terminal else "0",
            self.record_ttl,
            server_id,
            Keys.STAGING_SERVERS.format(name=""),
            Keys.CLIENT_SERVERS.format(client=""),
            Keys.HOST_SERVERS.format(host=""),
            *encode(changes),
        ]
        keys = [Keys.SERVER.format(id=server_id), Keys.ACTIVE_SERVERS]
        applied, _ = self._transition(keys=keys, args=args)
        return self.get(server_id) if applied == 1 else None

    def mark_ready(self, server: Server, **changes: Any) -> Server | None:
        """starting -> ready; a pooled, unclaimed server also joins its pool's ready list."""
        to_pool = server.pooled and server.claimed_at is None
        keys = [Keys.SERVER.format(id=server.id), Keys.POOL_READY.format(staging=server.staging)]
        changes = {"status": "ready", "status_changed_at": utcnow(), **changes}
        args = [server.id, "1" if to_pool else "0", *encode(changes)]
        return self.get(server.id) if self._ready(keys=keys, args=args) else None

    def list(self) -> list[Server]:
        """Every server Redis still remembers, newest first; forgets ids whose record expired."""
        ids = [text(server_id) for server_id in self.redis.smembers(Keys.SERVERS)]
        servers, expired = [], []
        for server_id in ids:
            server = self.get(server_id)
            (servers.append(server) if server else expired.append(server_id))
        if expired:
            self.redis.srem(Keys.SERVERS, *expired)
        return sorted(servers, key=lambda server: server.created_at, reverse=True)

    def active_count(self) -> int:
        return int(self.redis.scard(Keys.ACTIVE_SERVERS))

    def active(self) -> list[Server]:
        ids = [text(server_id) for server_id in self.redis.smembers(Keys.ACTIVE_SERVERS)]
        servers = (self.get(server_id) for server_id in ids)
        return [server for server in servers if server is not None]
