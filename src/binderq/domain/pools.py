"""What a pool needs: a pure decision from what upkeep observed. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from binderq.domain.models import Server, ServerStatus

REASON_DEAD = "retired from the pool: its container is not running"
REASON_OLD_VERSION = "retired from the pool: its staging was replaced"
REASON_TOO_OLD = "retired from the pool: older than the staging's max_age"
REASON_EXCESS = "retired from the pool: the pool was made smaller"

# After this many failed pooled launches in a short while, start one server at a time:
# a staging that cannot start (an image removed, a broken command) must not become a storm.
FAILURES_BEFORE_BACKOFF = 3
FAILURE_WINDOW = 60  # seconds


@dataclass(frozen=True)
class Pool:
    staging: str
    size: int = 0
    ready: int = 0
    starting: int = 0
    in_use: int = 0
    hits: int = 0
    misses: int = 0


@dataclass(frozen=True)
class PoolPlan:
    """How many servers to start, and which unclaimed ones to retire and why."""

    start: int = 0
    retire: dict[str, str] = field(default_factory=dict)


def is_pooled_unclaimed(server: Server) -> bool:
    return server.pooled and server.claimed_at is None


def plan_pool(*, size: int, version: int, staging_ready: bool, max_age: int, now: datetime,
              servers: list[Server], running: set[str], recent_failures: int = 0) -> PoolPlan:
    """Decide a pool's upkeep.

    servers: the staging's active, pooled, unclaimed servers. running: ids of servers whose
    notebook container runs. Servers of an old staging version, ready servers whose container
    died, and servers older than max_age are retired; then the pool is brought to size.
    New servers start only while the staging is ready, and one at a time while launches
    keep failing.
    """
    retire: dict[str, str] = {}
    for server in servers:
        reason = _retire_reason(server, version, max_age, now, running)
        if reason:
            retire[server.id] = reason
    healthy = [server for server in servers if server.id not in retire]
    excess = len(healthy) - size
    if excess > 0:
        # Retire the ones furthest from ready first, then the oldest.
        ranked = sorted(healthy, key=lambda s: (s.status == ServerStatus.READY, -_age(s, now)))
        retire.update({server.id: REASON_EXCESS for server in ranked[:excess]})
    start = max(0, size - len(healthy)) if staging_ready else 0
    if recent_failures >= FAILURES_BEFORE_BACKOFF:
        starting = sum(s.status != ServerStatus.READY for s in healthy)
        start = min(start, 0 if starting else 1)
    return PoolPlan(start=start, retire=retire)


def _retire_reason(server: Server, version: int, max_age: int, now: datetime,
                   running: set[str]) -> str | None:
    if server.staging_version != version:
        return REASON_OLD_VERSION
    if server.status == ServerStatus.READY and server.id not in running:
        return REASON_DEAD
    if _age(server, now) > max_age:
        return REASON_TOO_OLD
    return None


def _age(server: Server, now: datetime) -> float:
    return (now - server.created_at) / timedelta(seconds=1)
