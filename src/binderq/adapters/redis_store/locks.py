"""Locks with a time to live, so that only one run of upkeep, culling or reconcile acts."""

from __future__ import annotations

import redis

from binderq.adapters.redis_store.common import RELEASE_IF_HELD, Keys, speaks_to_redis


@speaks_to_redis
class LockStore:
    """Named locks; a holder releases only its own, and a dead holder's lock expires."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._release_if_held = client.register_script(RELEASE_IF_HELD)

    def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take lock name for ttl seconds unless someone holds it."""
        key = Keys.LOCK.format(name=name)
        return bool(self.redis.set(key, holder, nx=True, px=int(ttl * 1000)))

    def release(self, name: str, holder: str) -> None:
        self._release_if_held(keys=[Keys.LOCK.format(name=name)], args=[holder])
