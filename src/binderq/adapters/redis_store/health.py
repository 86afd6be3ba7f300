"""The last health report, shared by every API process for a few seconds, and the claim of
whoever refreshes it: so that health calls, however many, queue one worker canary."""

from __future__ import annotations

import json
from typing import Any

import redis

from binderq.adapters.redis_store.common import Keys, speaks_to_redis

# Claim the refresh (KEYS[2], for ARGV[1] ms) only while no report is saved (KEYS[1]): a
# caller that found none, and claims after another process saved one and gave up its claim,
# must take that report rather than send a second canary.
_CLAIM_REFRESH = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""


@speaks_to_redis
class HealthStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._claim_refresh = client.register_script(_CLAIM_REFRESH)

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
        """True for the one caller that should refresh the report now: nobody else is, and
        no report is saved."""
        return bool(self._claim_refresh(keys=[Keys.HEALTH, Keys.HEALTH_REFRESH],
                                        args=[int(seconds * 1000)]))
