"""Staging records in Redis: versions that never repeat, and writes that never go back."""

from __future__ import annotations

import json
from typing import Any

import redis

from binderq.adapters.redis_store.common import Keys, decode, encode, speaks_to_redis, text
from binderq.domain.models import Staging, staging_from_dict, to_dict

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

# One host's pull of one version's images, kept in the staging's `pulls` unless a newer PUT
# replaced that version. ARGV: version, host, the pull as JSON.
_RECORD_PULL = """
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
local raw = redis.call('HGET', KEYS[1], 'pulls')
local pulls = {}
if raw and raw ~= '{}' and raw ~= 'null' then pulls = cjson.decode(raw) end
pulls[ARGV[2]] = cjson.decode(ARGV[3])
redis.call('HSET', KEYS[1], 'pulls', cjson.encode(pulls))
return 1
"""


@speaks_to_redis
class StagingStore:
    """Stagings, by name, with the version counter of each name."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._save = client.register_script(_SAVE_STAGING)
        self._finish = client.register_script(_FINISH_STAGING)
        self._record_pull = client.register_script(_RECORD_PULL)

    def next_version(self, name: str) -> int:
        """A version no earlier PUT of this name had, even across delete and re-create."""
        return int(self.redis.incr(Keys.STAGING_VERSION.format(name=name)))

    def save(self, staging: Staging) -> bool:
        """Write staging unless a newer version is stored; True when written."""
        keys = [Keys.STAGING.format(name=staging.name), Keys.STAGINGS]
        args = [staging.version, staging.name, *encode(to_dict(staging))]
        return bool(self._save(keys=keys, args=args))

    def finish(self, name: str, version: int, **changes: Any) -> bool:
        """Set status fields of one version of a staging; False if it was replaced."""
        args = [json.dumps(version), *encode(changes)]
        return bool(self._finish(keys=[Keys.STAGING.format(name=name)], args=args))

    def record_pull(self, name: str, version: int, host: str, pull: dict[str, Any]) -> bool:
        """Note host's pull of version's images; False if that version was replaced."""
        args = [json.dumps(version), host, json.dumps(pull)]
        return bool(self._record_pull(keys=[Keys.STAGING.format(name=name)], args=args))

    def get(self, name: str) -> Staging | None:
        raw = self.redis.hgetall(Keys.STAGING.format(name=name))
        return staging_from_dict(decode(raw)) if raw else None

    def list(self) -> list[Staging]:
        names = sorted(text(name) for name in self.redis.smembers(Keys.STAGINGS))
        stagings = (self.get(name) for name in names)
        return [staging for staging in stagings if staging is not None]

    def delete(self, name: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.delete(Keys.STAGING.format(name=name))
            pipe.srem(Keys.STAGINGS, name)
            pipe.execute()
