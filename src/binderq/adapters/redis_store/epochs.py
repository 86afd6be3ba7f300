"""The epoch of a deployment's Redis: a random id written once, carried on every container
made while Redis keeps it. A Redis that lost its data has none, or a new one."""

from __future__ import annotations

import secrets

import redis

from binderq.adapters.redis_store.common import Keys, speaks_to_redis, text

# The stored epoch, written first if there is none (one round trip, one writer wins).
_CURRENT_OR_NEW = """
local current = redis.call('GET', KEYS[1])
if current then return {current, 0} end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], 1}
"""


@speaks_to_redis
class EpochStore:
    """binderq:epoch, set at first need by whichever process needs it first."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._current_or_new = client.register_script(_CURRENT_OR_NEW)

    def current(self) -> tuple[str, bool]:
        """(this Redis' epoch, whether this call began it): a new random one if it had none."""
        epoch, began = self._current_or_new(keys=[Keys.EPOCH], args=[secrets.token_hex(8)])
        return text(epoch), bool(began)

    def known(self) -> bool:
        """Whether this Redis has an epoch (no: it lost its data, or nothing needed one yet)."""
        return bool(self.redis.exists(Keys.EPOCH))
