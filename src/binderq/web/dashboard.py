"""What the operator's dashboard shows, gathered from the services the API uses: stagings
with their pools (and hit rate), servers with their cull deadlines, recent builds, health,
and the depth of each Celery queue (Redis LLEN of the queue's list)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from binderq.api.context import ApiContext
from binderq.domain.models import jsonable
from binderq.services import pools
from binderq.services.health import cached_health_report
from binderq.tasks import queues

RECENT_BUILDS = 20
RECENT_SERVERS = 50
SERVER_FIELDS = ("id", "staging", "status", "pooled", "kind", "url", "created_at",
                 "ready_at", "claimed_at", "last_activity", "cull_at", "error", "client")
BUILD_FIELDS = ("id", "repo", "ref", "commit", "status", "image", "cached", "created_at",
                "finished_at", "error")


def hit_rate(hits: int, misses: int) -> float | None:
    """The share of launches the pool served; None before any launch."""
    total = hits + misses
    return round(hits / total, 3) if total else None


def dashboard_state(ctx: ApiContext) -> dict[str, Any]:
    """Everything the dashboard shows, as JSON values."""
    return {"now": jsonable(datetime.now(UTC)), "stagings": stagings_with_pools(ctx),
            "servers": recent_servers(ctx), "builds": recent_builds(ctx),
            "health": cached_health_report(store=ctx.store, proxy=ctx.proxy,
                                           queue=ctx.queue, cache=ctx.health,
                                           hosts=ctx.settings.hosts),
            "queues": queue_depths(ctx), "max_servers": ctx.settings.max_servers}


def stagings_with_pools(ctx: ApiContext) -> list[dict[str, Any]]:
    by_staging = {pool.staging: pool for pool in pools.list_pools(store=ctx.store)}
    rows = []
    for staging in sorted(ctx.store.stagings.list(), key=lambda s: s.name):
        pool = by_staging.get(staging.name)
        figures = asdict(pool) if pool else {"size": 0, "ready": 0, "starting": 0,
                                             "in_use": 0, "hits": 0, "misses": 0}
        rows.append({"name": staging.name, "status": str(staging.status),
                     "public": staging.public, "kind": staging.kind,
                     "description": staging.description, "error": staging.error,
                     "cull_timeout": staging.cull_timeout, "pool": figures,
                     "hit_rate": hit_rate(figures["hits"], figures["misses"])})
    return rows


def recent_servers(ctx: ApiContext) -> list[dict[str, Any]]:
    return [{name: jsonable(getattr(server, name)) for name in SERVER_FIELDS}
            for server in ctx.store.servers.list()[:RECENT_SERVERS]]


def recent_builds(ctx: ApiContext) -> list[dict[str, Any]]:
    return [{name: jsonable(getattr(build, name)) for name in BUILD_FIELDS}
            for build in ctx.store.builds.recent(RECENT_BUILDS)]


def queue_depths(ctx: ApiContext) -> dict[str, int | None]:
    """Tasks waiting in each Celery queue (kombu keeps a queue as a Redis list of its
    name); None when Redis does not answer."""
    names = queues(ctx.settings)
    try:
        with ctx.store.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(name)
            return dict(zip(names, pipe.execute(), strict=True))
    except Exception:  # the dashboard shows what it can; health says Redis is down
        return dict.fromkeys(names)
