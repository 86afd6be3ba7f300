"""Collect what outlived BINDERQ_BUILD_TTL: door-made stagings nobody used, the images of
builds Redis forgot that no staging uses, and the build indexes' entries of those builds.
Observe, decide (domain/collect.py), act; under a lock, so one run acts at a time.

Build records and logs need no collector: Redis forgets them by their time to live.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from binderq.adapters.redis_store import RedisStore
from binderq.domain.collect import (
    door_stagings_to_remove,
    images_in_use,
    images_to_remove,
    normal_reference,
)
from binderq.domain.errors import Conflict, NotFound
from binderq.domain.models import utcnow
from binderq.services.deploy import delete_staging
from binderq.services.ports import Builder, TaskQueue
from binderq.settings import Settings

log = logging.getLogger(__name__)

LOCK = "collect"
LOCK_TTL = 600.0  # seconds: the collect task's hard time limit


@dataclass
class Collected:
    """What one run removed: door-made stagings, image references (tags, or ids of
    untagged images), and index entries of forgotten builds."""

    stagings: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    index_entries: int = 0


def collect(*, store: RedisStore, builder: Builder, queue: TaskQueue, settings: Settings,
            now: datetime | None = None) -> Collected | None:
    """One collector run; None if another run holds the lock."""
    holder = secrets.token_hex(8)
    if not store.locks.acquire(LOCK, holder, LOCK_TTL):
        return None
    try:
        collected = Collected(index_entries=store.builds.sweep_indexes())
        # Stagings first: an image a collected staging pinned may go in the same run.
        collected.stagings = collect_door_stagings(store=store, queue=queue,
                                                   settings=settings, now=now or utcnow())
        collected.images = collect_images(store=store, builder=builder, settings=settings)
    finally:
        store.locks.release(LOCK, holder)
    return collected


def collect_door_stagings(*, store: RedisStore, queue: TaskQueue, settings: Settings,
                          now: datetime) -> list[str]:
    """Delete the door-made stagings unused for BINDERQ_BUILD_TTL that have no server
    (other than stopped or failed) and no pool. A launch that comes meanwhile wins: the
    delete refuses a staging with a running server."""
    servers = store.servers.list()
    pooled = {name for name in store.pools.names()
              if (store.pools.counters(name) or {}).get("size", 0) > 0}
    chosen = door_stagings_to_remove(store.stagings.list(), servers, pooled=pooled, now=now,
                                     ttl=settings.build_ttl)
    removed = []
    for name in chosen:
        try:
            delete_staging(name, force=False, store=store, queue=queue)
        except (Conflict, NotFound) as why:
            log.info("door-made staging %s stays: %s", name, why)
            continue
        removed.append(name)
    return removed


def collect_images(*, store: RedisStore, builder: Builder, settings: Settings) -> list[str]:
    """Remove the images of builds Redis forgot that no staging names or pinned and no
    build in progress makes; one a container still uses stays (the engine refuses)."""
    images = builder.built_images(settings.instance)  # first: a later image is not judged
    building = {normal_reference(build.image) for build in store.builds.in_progress()
                if build.image}
    chosen = images_to_remove(
        images, live_builds=store.builds.existing(sorted({i.build_id for i in images})),
        in_use=images_in_use(store.stagings.list()), building=building)
    removed = []
    for references in chosen.values():
        removed += [reference for reference in references
                    if builder.remove_unused_image(reference)]
    return removed
