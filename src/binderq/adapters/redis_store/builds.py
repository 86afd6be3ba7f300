"""Build records in Redis: phases moved in one step with their log entry, the builds in
progress that the limit counts, the cache keys, and each build's log stream."""

from __future__ import annotations

import json
from typing import Any

import redis

from binderq.adapters.redis_store.common import (
    RELEASE_IF_HELD,
    Keys,
    decode,
    encode,
    pairs,
    speaks_to_redis,
    text,
)
from binderq.domain.builds import Build, BuildStatus, build_from_dict, build_to_dict
from binderq.domain.shares import client_builds_quota

_IS_FINAL_BUILD = """
local function is_final(status)
  return status == '"succeeded"' or status == '"failed"' or status == '"cancelled"'
end
"""

# Move a build that is not final yet (a cancel must not be overwritten by a late phase):
# set its fields, log the phase, and once it is final, give back its place among the builds
# in progress and let Redis forget the build ARGV[1] seconds later (every key but the set).
_MOVE_BUILD = _IS_FINAL_BUILD + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or is_final(status) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('XADD', KEYS[2], '*', 'phase', ARGV[2], 'message', ARGV[3])
if is_final(redis.call('HGET', KEYS[1], 'status')) then
  redis.call('SREM', KEYS[3], ARGV[4])
  for i = 1, #KEYS do
    if i ~= 3 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end
  end
end
return 1
"""

# Keep a log line of a build that exists if the log has room for its cost (ARGV[2]) under
# the limit (ARGV[3]): 1. The first line that does not fit is replaced by the notice
# (ARGV[4]), once; it and every later one is dropped: 0. Keys written after the build was
# final expire with it.
_APPEND_LINE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local used = tonumber(redis.call('GET', KEYS[3]) or '0')
local limit = tonumber(ARGV[3])
local kept = 0
if used + tonumber(ARGV[2]) <= limit then
  redis.call('XADD', KEYS[2], '*', 'line', ARGV[1])
  redis.call('INCRBY', KEYS[3], ARGV[2])
  kept = 1
elseif used <= limit then
  redis.call('XADD', KEYS[2], '*', 'line', ARGV[4])
  redis.call('SET', KEYS[3], limit + 1)
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return kept
"""

# Add a reader to a build (KEYS[1]); a build that is final already has its readers expire
# with it.
_ADD_READER = """
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""

# A cache key held by the build (ARGV[1]) expires with the build's record (KEYS[2]), so
# that no key names a build Redis forgot.
_KEY_LIVES_WITH_BUILD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
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

# Admit a build among those in progress if fewer than the limit are, and fewer than the
# client's limit (ARGV[4] > 0) were requested by its client (ARGV[5], as requested_by holds
# it); members whose record is final or gone (an expired record, a lost write) are dropped
# first. -1 when admitted, else {'client' or 'service', how many are in progress}.
_ADMIT_BUILD = _IS_FINAL_BUILD + """
local count, mine = 0, 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local fields = redis.call('HMGET', ARGV[3] .. id, 'status', 'requested_by')
  if not fields[1] or is_final(fields[1]) then redis.call('SREM', KEYS[1], id)
  else
    count = count + 1
    if fields[2] == ARGV[5] then mine = mine + 1 end
  end
end
local client_limit = tonumber(ARGV[4])
if client_limit > 0 and mine >= client_limit then return {'client', mine} end
if count >= tonumber(ARGV[1]) then return {'service', count} end
redis.call('SADD', KEYS[1], ARGV[2])
return -1
"""

# Claim a cache key for a build, or say who holds it, in one step (between a refused SET
# and a GET, a failing holder could release the key).
_CLAIM_KEY = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return ARGV[1] end
return redis.call('GET', KEYS[1])
"""


@speaks_to_redis
class BuildStore:
    """Builds, newest first, with their logs, cache keys and the stagings asked of them."""

    # The longest blocking read: redis-py does not lengthen the socket timeout (5 s in
    # bootstrap) for one, so a longer block would fail as if Redis were down.
    MAX_BLOCK_MS = 4000

    def __init__(self, client: redis.Redis, *, build_ttl: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.build_ttl = build_ttl  # seconds a final build is kept (BINDERQ_BUILD_TTL)
        self._append_line = client.register_script(_APPEND_LINE)
        self._add_reader_script = client.register_script(_ADD_READER)
        self._key_lives_with_build = client.register_script(_KEY_LIVES_WITH_BUILD)
        self._move = client.register_script(_MOVE_BUILD)
        self._admit = client.register_script(_ADMIT_BUILD)
        self._add_staging = client.register_script(_ADD_BUILD_STAGING)
        self._release_if_held = client.register_script(RELEASE_IF_HELD)
        self._claim_key = client.register_script(_CLAIM_KEY)

    def save(self, build: Build) -> None:
        """Write a build; its requester (requested_by) becomes its first reader."""
        with self.redis.pipeline() as pipe:
            pipe.hset(Keys.BUILD.format(id=build.id), mapping=pairs(build_to_dict(build)))
            pipe.zadd(Keys.BUILDS, {build.id: build.created_at.timestamp()})
            if build.requested_by:
                self._add_reader(pipe, build, build.requested_by)
            pipe.execute()

    def add_reader(self, build: Build, client: str) -> None:
        """Let client read build too (it asked for the same build, and shares it)."""
        keys = [Keys.BUILD.format(id=build.id), Keys.BUILD_READERS.format(id=build.id),
                Keys.CLIENT_BUILDS.format(client=client)]
        self._add_reader_script(keys=keys,
                                args=[client, build.created_at.timestamp(), build.id])

    @staticmethod
    def _add_reader(pipe: Any, build: Build, client: str) -> None:
        pipe.sadd(Keys.BUILD_READERS.format(id=build.id), client)
        pipe.zadd(Keys.CLIENT_BUILDS.format(client=client),
                  {build.id: build.created_at.timestamp()})

    def readers(self, build_id: str) -> set[str]:
        """The clients that asked for a build."""
        return {text(client) for client in
                self.redis.smembers(Keys.BUILD_READERS.format(id=build_id))}

    def recent_of(self, client: str, limit: int) -> list[Build]:
        """The builds client asked for, newest first."""
        key = Keys.CLIENT_BUILDS.format(client=client)
        ids = [text(i) for i in self.redis.zrevrange(key, 0, limit - 1)]
        builds = (self.get(build_id) for build_id in ids)
        return [build for build in builds if build is not None]

    def get(self, build_id: str) -> Build | None:
        raw = self.redis.hgetall(Keys.BUILD.format(id=build_id))
        return build_from_dict(decode(raw)) if raw else None

    def move(self, build_id: str, status: BuildStatus, message: str, *,
             keep_for: int | None = None, **changes: Any) -> Build | None:
        """Move a build that is not final yet to status and log the phase with message, in
        one step; None if it is final (a cancel won), and then nothing is logged. A final
        build is forgotten keep_for seconds later (default: build_ttl)."""
        keys = [Keys.BUILD.format(id=build_id), Keys.BUILD_LOG.format(id=build_id),
                Keys.BUILDS_IN_PROGRESS, Keys.BUILD_STAGINGS.format(id=build_id),
                Keys.BUILD_READERS.format(id=build_id), Keys.BUILD_LOG_BYTES.format(id=build_id)]
        args = [keep_for or self.build_ttl, str(status), message, build_id,
                *encode({"status": status, **changes})]
        return self.get(build_id) if self._move(keys=keys, args=args) else None

    def in_progress(self) -> list[Build]:
        """The builds counted among those in progress (see admit)."""
        ids = [text(i) for i in self.redis.smembers(Keys.BUILDS_IN_PROGRESS)]
        return [build for build in map(self.get, ids) if build is not None]

    def admit(self, build_id: str, limit: int, *, client: str = "",
              client_limit: int = 0) -> int | None:
        """Count build_id among the builds in progress if fewer than limit are (None); else
        how many are. It leaves the count when it is moved to a final status. With
        client_limit (> 0), also fewer than client_limit of those in progress may have been
        requested by client (Build.requested_by), else QuotaExceeded."""
        prefix = Keys.BUILD.format(id="")
        found = self._admit(keys=[Keys.BUILDS_IN_PROGRESS],
                            args=[limit, build_id, prefix, client_limit, json.dumps(client)])
        if found == -1:
            return None
        which, count = text(found[0]), int(found[1])
        if which == "client":
            raise client_builds_quota(client_limit, count)
        return count

    def add_staging(self, build_id: str, staging: dict[str, Any]) -> bool:
        """Stage the build's image under staging too once built; False if it is final."""
        keys = [Keys.BUILD.format(id=build_id), Keys.BUILD_STAGINGS.format(id=build_id)]
        return bool(self._add_staging(keys=keys, args=[json.dumps(staging)]))

    def stagings(self, build_id: str) -> list[dict[str, Any]]:
        """The stagings later requests asked of a build (add_staging), oldest first."""
        raw = self.redis.lrange(Keys.BUILD_STAGINGS.format(id=build_id), 0, -1)
        return [json.loads(item) for item in raw]

    def forget(self, build_id: str) -> None:
        readers = self.readers(build_id)
        with self.redis.pipeline() as pipe:
            pipe.delete(Keys.BUILD.format(id=build_id), Keys.BUILD_LOG.format(id=build_id),
                        Keys.BUILD_STAGINGS.format(id=build_id),
                        Keys.BUILD_LOG_BYTES.format(id=build_id),
                        Keys.BUILD_READERS.format(id=build_id))
            for client in readers:
                pipe.zrem(Keys.CLIENT_BUILDS.format(client=client), build_id)
            pipe.zrem(Keys.BUILDS, build_id)
            pipe.srem(Keys.BUILDS_IN_PROGRESS, build_id)
            pipe.execute()

    def recent(self, limit: int) -> list[Build]:
        ids = [text(i) for i in self.redis.zrevrange(Keys.BUILDS, 0, limit - 1)]
        builds = (self.get(build_id) for build_id in ids)
        return [build for build in builds if build is not None]

    def claim_key(self, key: str, build_id: str) -> str:
        """The build id owning key: build_id if it was free, else the one already there."""
        return text(self._claim_key(keys=[Keys.BUILD_KEY.format(key=key)], args=[build_id]))

    def release_key(self, key: str, build_id: str) -> None:
        self._release_if_held(keys=[Keys.BUILD_KEY.format(key=key)], args=[build_id])

    def key_lives_with_build(self, key: str, build_id: str) -> None:
        """Let the cache key build_id holds expire when the build's record does."""
        self._key_lives_with_build(keys=[Keys.BUILD_KEY.format(key=key),
                                         Keys.BUILD.format(id=build_id)], args=[build_id])

    def append_log(self, build_id: str, **entry: str) -> None:
        """Add an entry (a phase) to a build's log, uncounted: see append_line for lines."""
        self.redis.xadd(Keys.BUILD_LOG.format(id=build_id), entry)

    def append_line(self, build_id: str, line: str, *, cost: int, limit: int,
                    notice: str) -> bool:
        """Keep line in the build's log if the lines kept so far and its cost stay within
        limit bytes; the first that does not fit is replaced by notice. False once the log
        is full (or the build gone): later lines would be dropped too."""
        keys = [Keys.BUILD.format(id=build_id), Keys.BUILD_LOG.format(id=build_id),
                Keys.BUILD_LOG_BYTES.format(id=build_id)]
        return bool(self._append_line(keys=keys, args=[line, cost, limit, notice]))

    def existing(self, build_ids: list[str]) -> set[str]:
        """Those of build_ids whose record Redis still has."""
        with self.redis.pipeline(transaction=False) as pipe:
            for build_id in build_ids:
                pipe.exists(Keys.BUILD.format(id=build_id))
            found = pipe.execute()
        return {build_id for build_id, there in zip(build_ids, found, strict=True) if there}

    def sweep_indexes(self) -> int:
        """Drop the index entries (all builds, each client's) of builds Redis forgot, and
        give a final build that has no time to live yet (kept before builds expired) its
        BINDERQ_BUILD_TTL. How many entries were dropped."""
        ids = [text(i) for i in self.redis.zrange(Keys.BUILDS, 0, -1)]
        live = self.existing(ids)
        self._expire_untimed(sorted(live))
        dropped = self._drop_members(Keys.BUILDS, set(ids) - live)
        for key in self.redis.scan_iter(match=Keys.CLIENT_BUILDS.format(client="*"),
                                        count=500):
            members = [text(i) for i in self.redis.zrange(key, 0, -1)]
            dropped += self._drop_members(key, set(members) - self.existing(members))
        return dropped

    def _drop_members(self, key: str | bytes, gone: set[str]) -> int:
        return int(self.redis.zrem(key, *gone)) if gone else 0

    def _expire_untimed(self, build_ids: list[str]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for build_id in build_ids:
                pipe.ttl(Keys.BUILD.format(id=build_id))
                pipe.hget(Keys.BUILD.format(id=build_id), "status")
            found = pipe.execute()
        untimed = [build_id for build_id, ttl, status in
                   zip(build_ids, found[::2], found[1::2], strict=True)
                   if ttl == -1 and status and BuildStatus(json.loads(status)).is_final]
        with self.redis.pipeline(transaction=False) as pipe:
            for build_id in untimed:
                for key in (Keys.BUILD, Keys.BUILD_LOG, Keys.BUILD_STAGINGS,
                            Keys.BUILD_READERS, Keys.BUILD_LOG_BYTES):
                    pipe.expire(key.format(id=build_id), self.build_ttl)
            pipe.execute()

    def log(self, build_id: str, after: str = "-", block_ms: int | None = None
            ) -> list[tuple[str, dict[str, str]]]:
        """Log entries after the entry id `after` ("-": from the start); with block_ms,
        wait that long for new ones."""
        key = Keys.BUILD_LOG.format(id=build_id)
        if block_ms is None:
            start = "-" if after == "-" else f"({after}"
            entries = self.redis.xrange(key, min=start)
        else:
            found = self.redis.xread({key: "0" if after == "-" else after},
                                     block=min(block_ms, self.MAX_BLOCK_MS))
            entries = found[0][1] if found else []
        return [(text(entry_id), {text(k): text(v) for k, v in fields.items()})
                for entry_id, fields in entries]
