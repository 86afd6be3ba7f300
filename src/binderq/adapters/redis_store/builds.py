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

    LOG_LENGTH = 20000  # entries a build log keeps (about: Redis trims whole nodes)
    # The longest blocking read: redis-py does not lengthen the socket timeout (5 s in
    # bootstrap) for one, so a longer block would fail as if Redis were down.
    MAX_BLOCK_MS = 4000

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
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
        with self.redis.pipeline() as pipe:
            self._add_reader(pipe, build, client)
            pipe.execute()

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

    def move(self, build_id: str, status: BuildStatus, message: str,
             **changes: Any) -> Build | None:
        """Move a build that is not final yet to status and log the phase with message, in
        one step; None if it is final (a cancel won), and then nothing is logged."""
        keys = [Keys.BUILD.format(id=build_id), Keys.BUILD_LOG.format(id=build_id),
                Keys.BUILDS_IN_PROGRESS]
        args = [self.LOG_LENGTH, str(status), message, build_id,
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

    def append_log(self, build_id: str, **entry: str) -> None:
        self.redis.xadd(Keys.BUILD_LOG.format(id=build_id), entry,
                        maxlen=self.LOG_LENGTH, approximate=True)

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
