"""The last health report, shared by every API process for a few seconds, and the claim of
whoever refreshes it: so that health calls, however many, queue one worker canary."""

from __future__ import annotations

import json
from typing import Any

import redis

from binderq.adapters.redis_store.common import Keys, speaks_to_redis


@speaks_to_redis
class HealthStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def latest(self) -> dict[str, Any] | None:
        """The report saved less than its max age ago, or None."""
        raw = self.redis.get(Keys.HEALTH)
        return json.loads(raw) if raw else None

    def save(self, report: dict[str, Any], max_age: float) -> None:
        """Keep report for max_age seconds, and give up the claim to refresh it."""
        with self.redis.pipeline() as pipe:
            pipe.set(Keys.HEALTH, json.dumps(report), px=int(max_age * 1000))
            pipe.delete(Keys.HEALTH_REFRESH)
            pipe.execute()

    def claim_refresh(self, seconds: float) -> bool:
        """True for the one caller that should refresh the report now."""
        return bool(self.redis.set(Keys.HEALTH_REFRESH, "1", nx=True,
                                   px=int(seconds * 1000)))
