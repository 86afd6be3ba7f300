"""Each Docker host's proof of life: a key that lives HEARTBEAT_TTL seconds, written by the
host's launch worker while its engine answers, with the servers running there then. Placement
(the reserve script) reads the alive keys; health and host-loss read the rest."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

import redis

from binderq.adapters.redis_store.common import Keys, speaks_to_redis, text
from binderq.domain.models import isoformat, parse_time


@speaks_to_redis
class HostStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def beat(self, host: str, running: Iterable[str], *, at: datetime, ttl: int) -> None:
        """Host is up now (for ttl seconds), with these servers' notebooks running."""
        snapshot = json.dumps({"at": isoformat(at), "running": sorted(running)})
        with self.redis.pipeline() as pipe:
            pipe.set(Keys.HOST_ALIVE.format(host=host), isoformat(at), ex=ttl)
            pipe.set(Keys.HOST_SEEN.format(host=host), isoformat(at))
            pipe.set(Keys.HOST_RUNNING.format(host=host), snapshot, ex=ttl)
            pipe.delete(Keys.HOST_DOWN_NOTICED.format(host=host))
            pipe.execute()

    def up(self, hosts: Sequence[str]) -> set[str]:
        """The hosts among these whose last beat is still alive."""
        with self.redis.pipeline() as pipe:
            for host in hosts:
                pipe.exists(Keys.HOST_ALIVE.format(host=host))
            alive = pipe.execute()
        return {host for host, found in zip(hosts, alive, strict=True) if found}

    def last_seen(self, host: str) -> datetime | None:
        raw = self.redis.get(Keys.HOST_SEEN.format(host=host))
        return parse_time(text(raw)) if raw else None

    def running(self, host: str) -> tuple[set[str], datetime] | None:
        """(servers running on host, when that was seen) from its live beat; None if down."""
        raw = self.redis.get(Keys.HOST_RUNNING.format(host=host))
        if not raw:
            return None
        snapshot = json.loads(raw)
        return set(snapshot["running"]), parse_time(snapshot["at"])

    def down_since(self, host: str, now: datetime) -> datetime:
        """When host was last seen up; for one never seen, when it was first found down."""
        seen = self.last_seen(host)
        if seen is not None:
            return seen
        key = Keys.HOST_DOWN_NOTICED.format(host=host)
        self.redis.set(key, isoformat(now), nx=True)
        return parse_time(text(self.redis.get(key) or isoformat(now))) or now
