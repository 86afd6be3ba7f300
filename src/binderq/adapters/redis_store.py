"""Redis holds binderq's records: stagings, servers, issued tokens, task names.

Each record is a hash whose fields are JSON-encoded values, so Lua scripts can compare and
set single fields (status, version) atomically without decoding the rest.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from binderq.domain.builds import Build, BuildStatus
from binderq.domain.errors import CapacityExceeded, DependencyDown, StaleStaging
from binderq.domain.models import (
    Server,
    ServerStatus,
    Staging,
    parse_time,
    server_from_dict,
    staging_from_dict,
    to_dict,
    utcnow,
)

T = TypeVar("T")


@dataclass(frozen=True)
class PoolClaim:
    server: Server
    # True when no replenish was queued for the pool: the claimant must queue one.
    queue_replenish: bool

# Reserve a place for a new server: refuse past capacity, else write it and count it active.
_RESERVE_SERVER = """
local used = redis.call('SCARD', KEYS[2])
if used >= tonumber(ARGV[1]) then return {0, used} end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
return {1, used + 1}
"""

# Move a server between statuses only from an allowed one; a terminal status frees its place.
_TRANSITION_SERVER = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {-1, ''} end
local allowed = cjson.decode(ARGV[1])
local ok = false
for _, status in ipairs(allowed) do
  if status == current then ok = true end
end
if not ok then return {0, current} end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
if ARGV[2] == '1' then
  redis.call('SREM', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return {1, current}
"""

# Mark a starting server ready and, for a pooled one, put it in its pool's ready list.
_READY = """
if redis.call('HGET', KEYS[1], 'status') ~= '"starting"' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] == '1' then redis.call('RPUSH', KEYS[2], ARGV[1]) end
return 1
"""

# Claim a ready server from a pool, in one step: refuse if the caller checked another version
# of the staging than the current one ('stale'); pop a server, check it is ready, unclaimed
# and of the current version, stamp the claim, count the hit, and ask for upkeep (queue
# a replenish if none is queued, else mark the pool dirty). Returns {id, queue it?, fields}.
# Servers that fail the check stay out of the list for upkeep to retire. A miss is counted
# when the list runs dry.
_CLAIM = """
local version = redis.call('HGET', KEYS[2], 'version')
if not version then return false end
if ARGV[3] ~= '' and ARGV[3] ~= version then return {'stale'} end
while true do
  local id = redis.call('LPOP', KEYS[1])
  if not id then
    if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HINCRBY', KEYS[3], 'misses', 1) end
    return false
  end
  local server = ARGV[1] .. id
  local fields = redis.call('HMGET', server, 'status', 'staging_version', 'claimed_at')
  if fields[1] == '"ready"' and fields[2] == version and fields[3] == 'null' then
    redis.call('HSET', server, unpack(ARGV, 4))
    redis.call('HINCRBY', KEYS[3], 'hits', 1)
    local queue_it = redis.call('SET', KEYS[4], 1, 'NX', 'EX', tonumber(ARGV[2]))
    return {id, queue_it and 1 or 0, redis.call('HGETALL', server)}
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

_IS_FINAL_BUILD = """
local function is_final(status)
  return status == '"succeeded"' or status == '"failed"' or status == '"cancelled"'
end
"""

# Move a build that is not final yet (a cancel must not be overwritten by a late phase):
# set its fields, log the phase, and once it is final, give back its place among the builds
# in progress.
_MOVE_BUILD = _IS_FINAL_BUILD + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or is_final(status) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'phase', ARGV[2], 'message', ARGV[3])
if is_final(redis.call('HGET', KEYS[1], 'status')) then redis.call('SREM', KEYS[3], ARGV[4]) end
return 1
"""

# Ask a build that is not final yet to stage its image once built as well: 1, or 0 if it
# is final already (then the caller stages it, or not, itself).
_ADD_BUILD_STAGING = _IS_FINAL_BUILD + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or is_final(status) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
"""

# Admit a build among those in progress if fewer than the limit are; members whose record
# is final or gone (an expired record, a lost write) are dropped first. -1 when admitted,
# else how many are in progress.
_ADMIT_BUILD = _IS_FINAL_BUILD + """
local count = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local status = redis.call('HGET', ARGV[3] .. id, 'status')
  if not status or is_final(status) then redis.call('SREM', KEYS[1], id)
  else count = count + 1 end
end
if count >= tonumber(ARGV[1]) then return count end
redis.call('SADD', KEYS[1], ARGV[2])
return -1
"""

# Release a lock only if this holder still has it.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Write a staging only if no newer version of it has been written.
_SAVE_STAGING = """
local stored = redis.call('HGET', KEYS[1], 'version')
if stored and tonumber(stored) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('SADD', KEYS[2], ARGV[2])
return 1
"""

# Record the outcome of staging, unless a newer PUT has replaced that version meanwhile.
_FINISH_STAGING = """
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


def _redis_errors_as_ours(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return method(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise DependencyDown("Redis", str(error)) from error

    return wrapper


def _speaks_to_redis(cls: type[T]) -> type[T]:
    """Turn every Redis connection error of the class's public methods into DependencyDown."""
    for name, member in list(vars(cls).items()):
        if callable(member) and not name.startswith("_"):
            setattr(cls, name, _redis_errors_as_ours(member))
    return cls


def _encode(record: dict[str, Any]) -> list[str]:
    flat: list[str] = []
    for key, value in record.items():
        flat += [key, json.dumps(value)]
    return flat


def _decode(raw: dict[bytes | str, bytes | str]) -> dict[str, Any]:
    return {_text(key): json.loads(value) for key, value in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@_speaks_to_redis
class RedisStore:
    """Every read and write of binderq's state in Redis."""

    STAGING = "binderq:staging:{name}"
    STAGINGS = "binderq:stagings"
    STAGING_VERSION = "binderq:staging-version:{name}"
    SERVER = "binderq:server:{id}"
    SERVERS = "binderq:servers"
    ACTIVE_SERVERS = "binderq:servers:active"
    POOLS = "binderq:pools"
    POOL = "binderq:pool:{staging}"
    POOL_READY = "binderq:pool:{staging}:ready"
    POOL_DIRTY = "binderq:pool:{staging}:dirty"
    POOL_QUEUED = "binderq:pool:{staging}:replenish-queued"
    POOL_FAILURES = "binderq:pool:{staging}:failures"
    BUILD = "binderq:build:{id}"
    BUILDS = "binderq:builds"
    BUILD_KEY = "binderq:build-key:{key}"
    BUILDS_IN_PROGRESS = "binderq:builds:in-progress"
    BUILD_LOG = "binderq:build:{id}:log"
    BUILD_STAGINGS = "binderq:build:{id}:stagings"
    BUILD_LOG_LENGTH = 20000  # entries a build log keeps (about: Redis trims whole nodes)
    LOCK = "binderq:lock:{name}"
    TASK = "binderq:task:{id}"
    USER_TOKEN = "binderq:user-token:{hash}"

    TASK_TTL = 24 * 3600

    def __init__(self, client: redis.Redis, *, record_ttl: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.record_ttl = record_ttl
        self._reserve_server = client.register_script(_RESERVE_SERVER)
        self._transition_server = client.register_script(_TRANSITION_SERVER)
        self._save_staging = client.register_script(_SAVE_STAGING)
        self._finish_staging = client.register_script(_FINISH_STAGING)
        self._ready = client.register_script(_READY)
        self._claim = client.register_script(_CLAIM)
        self._retire = client.register_script(_RETIRE)
        self._release_lock = client.register_script(_RELEASE_LOCK)
        self._move_build = client.register_script(_MOVE_BUILD)
        self._admit_build = client.register_script(_ADMIT_BUILD)
        self._add_build_staging = client.register_script(_ADD_BUILD_STAGING)

    def ping(self) -> bool:
        return bool(self.redis.ping())

    # -- stagings -------------------------------------------------------------------------

    def next_staging_version(self, name: str) -> int:
        """A version no earlier PUT of this name had, even across delete and re-create."""
        return int(self.redis.incr(self.STAGING_VERSION.format(name=name)))

    def save_staging(self, staging: Staging) -> bool:
        """Write staging unless a newer version is stored; True when written."""
        keys = [self.STAGING.format(name=staging.name), self.STAGINGS]
        args = [staging.version, staging.name, *_encode(to_dict(staging))]
        return bool(self._save_staging(keys=keys, args=args))

    def finish_staging(self, name: str, version: int, **changes: Any) -> bool:
        """Set status fields of one version of a staging; False if it was replaced."""
        args = [json.dumps(version), *_encode(changes)]
        return bool(self._finish_staging(keys=[self.STAGING.format(name=name)], args=args))

    def get_staging(self, name: str) -> Staging | None:
        raw = self.redis.hgetall(self.STAGING.format(name=name))
        return staging_from_dict(_decode(raw)) if raw else None

    def list_stagings(self) -> list[Staging]:
        names = sorted(_text(name) for name in self.redis.smembers(self.STAGINGS))
        stagings = (self.get_staging(name) for name in names)
        return [staging for staging in stagings if staging is not None]

    def delete_staging(self, name: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.delete(self.STAGING.format(name=name))
            pipe.srem(self.STAGINGS, name)
            pipe.execute()

    # -- servers --------------------------------------------------------------------------

    def reserve_server(self, server: Server, max_servers: int) -> None:
        """Write a new server if fewer than max_servers are active; else CapacityExceeded."""
        keys = [self.SERVER.format(id=server.id), self.ACTIVE_SERVERS, self.SERVERS]
        args = [max_servers, server.id, *_encode(to_dict(server))]
        written, used = self._reserve_server(keys=keys, args=args)
        if not written:
            raise CapacityExceeded(limit=max_servers, used=int(used))

    def adopt_server(self, server: Server) -> None:
        """Write a server rebuilt from its container; capacity does not apply: it runs."""
        with self.redis.pipeline() as pipe:
            pipe.hset(self.SERVER.format(id=server.id), mapping=_pairs(to_dict(server)))
            pipe.sadd(self.ACTIVE_SERVERS, server.id)
            pipe.sadd(self.SERVERS, server.id)
            pipe.execute()

    def get_server(self, server_id: str) -> Server | None:
        raw = self.redis.hgetall(self.SERVER.format(id=server_id))
        return server_from_dict(_decode(raw)) if raw else None

    def transition_server(
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
        encoded = _encode({k: _jsonable(v) for k, v in changes.items()})
        args = [
            json.dumps([json.dumps(str(s)) for s in allowed]),
            "1" if terminal else "0",
            self.record_ttl,
            server_id,
            *encoded,
        ]
        keys = [self.SERVER.format(id=server_id), self.ACTIVE_SERVERS]
        applied, _ = self._transition_server(keys=keys, args=args)
        return self.get_server(server_id) if applied == 1 else None

    def mark_ready(self, server: Server, **changes: Any) -> Server | None:
        """starting -> ready; a pooled, unclaimed server also joins its pool's ready list."""
        to_pool = server.pooled and server.claimed_at is None
        keys = [self.SERVER.format(id=server.id), self.POOL_READY.format(staging=server.staging)]
        changes = {"status": "ready", "status_changed_at": utcnow(), **changes}
        args = [server.id, "1" if to_pool else "0",
                *_encode({k: _jsonable(v) for k, v in changes.items()})]
        return self.get_server(server.id) if self._ready(keys=keys, args=args) else None

    def list_servers(self) -> list[Server]:
        """Every server Redis still remembers, newest first; forgets ids whose record expired."""
        ids = [_text(server_id) for server_id in self.redis.smembers(self.SERVERS)]
        servers, expired = [], []
        for server_id in ids:
            server = self.get_server(server_id)
            (servers.append(server) if server else expired.append(server_id))
        if expired:
            self.redis.srem(self.SERVERS, *expired)
        return sorted(servers, key=lambda server: server.created_at, reverse=True)

    def active_server_count(self) -> int:
        return int(self.redis.scard(self.ACTIVE_SERVERS))

    def active_servers(self) -> list[Server]:
        ids = [_text(server_id) for server_id in self.redis.smembers(self.ACTIVE_SERVERS)]
        servers = (self.get_server(server_id) for server_id in ids)
        return [server for server in servers if server is not None]

    # -- pools ----------------------------------------------------------------------------

    def set_pool_size(self, staging: str, size: int) -> None:
        with self.redis.pipeline() as pipe:
            pipe.hset(self.POOL.format(staging=staging), "size", size)
            pipe.hsetnx(self.POOL.format(staging=staging), "hits", 0)
            pipe.hsetnx(self.POOL.format(staging=staging), "misses", 0)
            pipe.sadd(self.POOLS, staging)
            pipe.execute()

    def pool_counters(self, staging: str) -> dict[str, int] | None:
        """{size, hits, misses} of a staging's pool, or None when it has none."""
        raw = self.redis.hgetall(self.POOL.format(staging=staging))
        return {_text(key): int(value) for key, value in raw.items()} if raw else None

    def pool_names(self) -> list[str]:
        return sorted(_text(name) for name in self.redis.smembers(self.POOLS))

    def forget_pool(self, staging: str) -> None:
        keys = [template.format(staging=staging) for template in
                (self.POOL, self.POOL_READY, self.POOL_DIRTY, self.POOL_QUEUED,
                 self.POOL_FAILURES)]
        with self.redis.pipeline() as pipe:
            pipe.delete(*keys)
            pipe.srem(self.POOLS, staging)
            pipe.execute()

    def claim_pooled_server(self, staging: str, *, queued_ttl: int = 30,
                            expected_version: int | None = None,
                            **claim: Any) -> PoolClaim | None:
        """Atomically take a ready server of the staging's current version from its pool.

        One round trip, on the hot path of every pooled launch: the claim, the hit, the
        claimed server's record, and whether a replenish must be queued. With
        expected_version, StaleStaging if the staging is at another version now.
        """
        keys = [self.POOL_READY.format(staging=staging), self.STAGING.format(name=staging),
                self.POOL.format(staging=staging), self.POOL_QUEUED.format(staging=staging)]
        expected = json.dumps(expected_version) if expected_version is not None else ""
        args = [self.SERVER.format(id=""), queued_ttl, expected,
                *_encode({k: _jsonable(v) for k, v in claim.items()})]
        claimed = self._claim(keys=keys, args=args)
        if not claimed:
            return None
        if len(claimed) == 1:
            raise StaleStaging(staging)
        _, queue_replenish, flat = claimed
        record = _decode(dict(zip(flat[::2], flat[1::2], strict=True)))
        return PoolClaim(server_from_dict(record), bool(queue_replenish))

    def retire_pooled_server(self, server: Server, reason: str) -> bool:
        """Take an unclaimed server out of its pool, marked stopping; False if claimed."""
        keys = [self.POOL_READY.format(staging=server.staging), self.SERVER.format(id=server.id)]
        now = json.dumps(_jsonable(utcnow()))
        return bool(self._retire(keys=keys, args=[server.id, json.dumps(reason), now]))

    def ready_in_pool(self, staging: str) -> int:
        return int(self.redis.llen(self.POOL_READY.format(staging=staging)))

    def acquire_lock(self, name: str, holder: str, ttl: float) -> bool:
        """Take lock name for ttl seconds unless someone holds it."""
        key = self.LOCK.format(name=name)
        return bool(self.redis.set(key, holder, nx=True, px=int(ttl * 1000)))

    def release_lock(self, name: str, holder: str) -> None:
        self._release_lock(keys=[self.LOCK.format(name=name)], args=[holder])

    def mark_pool_dirty(self, staging: str) -> None:
        self.redis.set(self.POOL_DIRTY.format(staging=staging), 1)

    def take_pool_dirty(self, staging: str) -> bool:
        """Whether the pool was marked dirty since the last take; clears the mark."""
        return bool(self.redis.getdel(self.POOL_DIRTY.format(staging=staging)))

    def claim_replenish_slot(self, staging: str, ttl: int) -> bool:
        """True if no replenish is queued for the staging yet (and now one is)."""
        return bool(self.redis.set(self.POOL_QUEUED.format(staging=staging), 1, nx=True,
                                   ex=ttl))

    def count_pool_failure(self, staging: str, window: int) -> None:
        """One more failed pooled launch; the count forgets itself window seconds on."""
        key = self.POOL_FAILURES.format(staging=staging)
        with self.redis.pipeline() as pipe:
            pipe.set(key, 0, ex=window, nx=True)
            pipe.incr(key)
            pipe.execute()

    def recent_pool_failures(self, staging: str) -> int:
        return int(self.redis.get(self.POOL_FAILURES.format(staging=staging)) or 0)

    def release_replenish_slot(self, staging: str) -> None:
        self.redis.delete(self.POOL_QUEUED.format(staging=staging))

    # -- builds ---------------------------------------------------------------------------

    def save_build(self, build: Build) -> None:
        with self.redis.pipeline() as pipe:
            pipe.hset(self.BUILD.format(id=build.id), mapping=_pairs(build_to_dict(build)))
            pipe.zadd(self.BUILDS, {build.id: build.created_at.timestamp()})
            pipe.execute()

    def get_build(self, build_id: str) -> Build | None:
        raw = self.redis.hgetall(self.BUILD.format(id=build_id))
        return build_from_dict(_decode(raw)) if raw else None

    def move_build(self, build_id: str, status: BuildStatus, message: str,
                   **changes: Any) -> Build | None:
        """Move a build that is not final yet to status and log the phase with message, in
        one step; None if it is final (a cancel won), and then nothing is logged."""
        encoded = _encode({k: _jsonable(v) for k, v in {"status": status, **changes}.items()})
        keys = [self.BUILD.format(id=build_id), self.BUILD_LOG.format(id=build_id),
                self.BUILDS_IN_PROGRESS]
        applied = self._move_build(keys=keys, args=[self.BUILD_LOG_LENGTH, str(status), message,
                                                    build_id, *encoded])
        return self.get_build(build_id) if applied else None

    def builds_in_progress(self) -> list[Build]:
        """The builds counted among those in progress (see admit_build)."""
        ids = [_text(i) for i in self.redis.smembers(self.BUILDS_IN_PROGRESS)]
        return [build for build in map(self.get_build, ids) if build is not None]

    def admit_build(self, build_id: str, limit: int) -> int | None:
        """Count build_id among the builds in progress if fewer than limit are (None); else
        how many are. It leaves the count when it is moved to a final status."""
        prefix = self.BUILD.format(id="")
        found = int(self._admit_build(keys=[self.BUILDS_IN_PROGRESS],
                                      args=[limit, build_id, prefix]))
        return None if found < 0 else found

    def add_build_staging(self, build_id: str, staging: dict[str, Any]) -> bool:
        """Stage the build's image under staging too once built; False if it is final."""
        keys = [self.BUILD.format(id=build_id), self.BUILD_STAGINGS.format(id=build_id)]
        return bool(self._add_build_staging(keys=keys, args=[json.dumps(staging)]))

    def build_stagings(self, build_id: str) -> list[dict[str, Any]]:
        """The stagings later requests asked of a build (add_build_staging), oldest first."""
        raw = self.redis.lrange(self.BUILD_STAGINGS.format(id=build_id), 0, -1)
        return [json.loads(item) for item in raw]

    def forget_build(self, build_id: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.delete(self.BUILD.format(id=build_id), self.BUILD_LOG.format(id=build_id),
                        self.BUILD_STAGINGS.format(id=build_id))
            pipe.zrem(self.BUILDS, build_id)
            pipe.srem(self.BUILDS_IN_PROGRESS, build_id)
            pipe.execute()

    def recent_builds(self, limit: int) -> list[Build]:
        ids = [_text(i) for i in self.redis.zrevrange(self.BUILDS, 0, limit - 1)]
        builds = (self.get_build(build_id) for build_id in ids)
        return [build for build in builds if build is not None]

    def claim_build_key(self, key: str, build_id: str) -> str:
        """The build id owning key: build_id if it was free, else the one already there."""
        name = self.BUILD_KEY.format(key=key)
        if self.redis.set(name, build_id, nx=True):
            return build_id
        return _text(self.redis.get(name) or build_id.encode())

    def release_build_key(self, key: str, build_id: str) -> None:
        self._release_lock(keys=[self.BUILD_KEY.format(key=key)], args=[build_id])

    def append_build_log(self, build_id: str, **entry: str) -> None:
        self.redis.xadd(self.BUILD_LOG.format(id=build_id), entry,
                        maxlen=self.BUILD_LOG_LENGTH, approximate=True)

    def build_log(self, build_id: str, after: str = "-", block_ms: int | None = None
                  ) -> list[tuple[str, dict[str, str]]]:
        """Log entries after the entry id `after` ("-": from the start); with block_ms,
        wait that long for new ones."""
        key = self.BUILD_LOG.format(id=build_id)
        if block_ms is None:
            start = "-" if after == "-" else f"({after}"
            entries = self.redis.xrange(key, min=start)
        else:
            found = self.redis.xread({key: "0" if after == "-" else after}, block=block_ms)
            entries = found[0][1] if found else []
        return [(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
                for entry_id, fields in entries]

    # -- tasks and tokens -----------------------------------------------------------------

    def record_task(self, task_id: str, name: str) -> None:
        self.redis.set(self.TASK.format(id=task_id), name, ex=self.TASK_TTL)

    def task_name(self, task_id: str) -> str | None:
        name = self.redis.get(self.TASK.format(id=task_id))
        return _text(name) if name is not None else None

    def save_user_token(self, token_hash: str, record: dict[str, Any]) -> None:
        self.redis.hset(self.USER_TOKEN.format(hash=token_hash), mapping=_pairs(record))

    def get_user_token(self, token_hash: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(self.USER_TOKEN.format(hash=token_hash))
        return _decode(raw) if raw else None

    def delete_user_token(self, token_id: str) -> bool:
        """Remove the token whose hash starts with token_id; False if there is none."""
        for key in self.redis.scan_iter(self.USER_TOKEN.format(hash=f"{token_id}*")):
            return bool(self.redis.delete(key))
        return False


def build_to_dict(build: Build) -> dict[str, Any]:
    record = {key: _jsonable(value) for key, value in vars(build).items()}
    record["status"] = str(build.status)
    return record


def build_from_dict(record: dict[str, Any]) -> Build:
    values = dict(record)
    values["status"] = BuildStatus(values["status"])
    for key in ("created_at", "started_at", "finished_at"):
        values[key] = parse_time(values.get(key))
    return Build(**values)


def _pairs(record: dict[str, Any]) -> dict[str, str]:
    flat = _encode(record)
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (ServerStatus, BuildStatus)):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, ServerStatus):
        return str(value)
    return value
