"""Observations for /metrics and the log, recorded where things happen: a launch answered
from the pool, a cold server ready, a build finished, a server culled.

Reason to change: what binderq measures about its work.

Each is one Redis round trip at most, and never fails the work it observes: a pooled claim
that happened must reach its client even if its observation could not be written.
"""

from __future__ import annotations

import logging

from binderq.adapters.redis_store import RedisStore
from binderq.domain.builds import Build
from binderq.domain.models import Server
from binderq.metrics import BUILD_SECONDS, COLD, CULLS, LAUNCH_SECONDS, POOLED, seconds_between

log = logging.getLogger(__name__)


def pooled_launch_answered(seconds: float, *, store: RedisStore) -> None:
    """A launch was answered from the pool in seconds (the API's side of it)."""
    _safely(lambda: store.metrics.observe(LAUNCH_SECONDS, seconds, POOLED))


def server_ready(server: Server, *, store: RedisStore) -> None:
    """A server became ready; a cold one's launch took from its request to now."""
    seconds = seconds_between(server.created_at, server.ready_at)
    kind = "pooled, waiting to be claimed" if server.pooled else "cold launch"
    log.info("server %s of %s ready (%s) after %.2f s", server.id, server.staging, kind,
             seconds or 0.0, extra={"server": server.id, "staging": server.staging})
    if not server.pooled and seconds is not None:
        _safely(lambda: store.metrics.observe(LAUNCH_SECONDS, seconds, COLD))


def build_finished(build: Build | None, *, store: RedisStore) -> None:
    """A build ended (succeeded or failed) after running on a worker since started_at."""
    seconds = seconds_between(build.started_at, build.finished_at) if build else None
    if seconds is not None:
        _safely(lambda: store.metrics.observe(BUILD_SECONDS, seconds, str(build.status)))


def server_culled(*, store: RedisStore) -> None:
    _safely(lambda: store.metrics.count(CULLS))


def _safely(record) -> None:
    try:
        record()
    except Exception as error:  # a metric lost is better than work undone
        log.warning("could not record a metric: %s", error)
