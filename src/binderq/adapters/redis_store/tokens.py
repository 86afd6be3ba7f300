"""Issued user tokens (by hash only) and the names of queued tasks, in Redis."""

from __future__ import annotations

from typing import Any

import redis

from binderq.adapters.redis_store.common import Keys, decode, pairs, speaks_to_redis, text


@speaks_to_redis
class TokenStore:
    """User tokens, stored under the hash of the token, never the token."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def save(self, token_hash: str, record: dict[str, Any]) -> None:
        self.redis.hset(Keys.USER_TOKEN.format(hash=token_hash), mapping=pairs(record))

    def get(self, token_hash: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(Keys.USER_TOKEN.format(hash=token_hash))
        return decode(raw) if raw else None

    def delete(self, token_id: str) -> bool:
        """Remove the token whose hash starts with token_id; False if there is none."""
        for key in self.redis.scan_iter(Keys.USER_TOKEN.format(hash=f"{token_id}*")):
            return bool(self.redis.delete(key))
        return False


@speaks_to_redis
class TaskStore:
    """Which task an id belongs to, so GET /api/tasks/{id} can name it."""

    TTL = 24 * 3600

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def record(self, task_id: str, name: str) -> None:
        self.redis.set(Keys.TASK.format(id=task_id), name, ex=self.TTL)

    def name(self, task_id: str) -> str | None:
        name = self.redis.get(Keys.TASK.format(id=task_id))
        return text(name) if name is not None else None
