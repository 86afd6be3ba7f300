"""Deploy: the one launch service behind every door (the JSON API, tmpnb's spawn,
BinderHub's stream, and the pages to come). It decides who may launch (domain/access.py),
launches from the pool when it has a server, else cold, and retries once when the staging
it decided on proved stale. Also deletes a staging with its pool and servers."""

from __future__ import annotations

import threading
import time

from binderq.adapters.redis_store import RedisStore
from binderq.domain.access import Caller, require_launch_right
from binderq.domain.errors import (
    CapacityExceeded,
    Conflict,
    PoolEmpty,
    QuotaExceeded,
    StaleStaging,
)
from binderq.domain.launch_queue import waits_for_room
from binderq.domain.models import Server, Staging
from binderq.domain.pools import is_pooled_unclaimed
from binderq.domain.shares import NO_SHARE, ClientShare, share_of
from binderq.services import observe
from binderq.services.launch_queue import join_queue, serve_queue_if_waiting
from binderq.services.pools import claim_from_pool, retire_unclaimed
from binderq.services.ports import TaskQueue
from binderq.services.servers import Launch, request_cold_launch, request_stop
from binderq.services.stagings import get_staging
from binderq.settings import Settings


class StagingCache:
    """Stagings as this process last read them, for the pooled launch's hot path only.

    Safe because the claim refuses a stale copy (the pool claim checks the version in
    Redis), and then the copy is read afresh.
    """

    def __init__(self) -> None:
        self._stagings: dict[str, Staging] = {}
        self._lock = threading.Lock()

    def get(self, name: str, store: RedisStore, *, fresh: bool = False) -> Staging:
        staging = None if fresh else self._stagings.get(name)
        if staging is None:
            staging = get_staging(name, store=store)
            with self._lock:
                self._stagings[name] = staging
        return staging


def launch(name: str, *, caller: Caller, store: RedisStore, queue: TaskQueue,
           settings: Settings, stagings: StagingCache | None = None,
           cold: bool = True, queue_when_full: bool = False) -> Launch:
    """Launch a server of staging `name` for caller, at any door.

    From this process's copy of the staging when there is one (the pooled hot path: one
    Redis round trip); if the claim finds the copy stale, the staging is read again, the
    right checked again, and the launch tried once more. cold=False takes only a pooled
    server (tmpnb's door) and raises PoolEmpty when there is none.
    """
    started = time.perf_counter()
    cache = stagings or StagingCache()
    share = share_of(caller, max_servers=settings.client_max_servers,
                     max_builds=settings.client_max_builds)
    for fresh in (False, True):
        staging = cache.get(name, store, fresh=fresh)
        require_launch_right(caller, public=staging.public, launch_auth=settings.launch_auth)
        try:
            launched = request_launch(staging, store=store, queue=queue, settings=settings,
                                      cold=cold, share=share, queue_when_full=queue_when_full)
        except StaleStaging:
            continue
        if launched.server.pooled:
            observe.pooled_launch_answered(time.perf_counter() - started, store=store)
        return launched
    raise StaleStaging(name)  # changed twice within one request: let the client retry


def request_launch(staging: Staging | str, *, store: RedisStore, queue: TaskQueue,
                   settings: Settings, cold: bool = True,
                   share: ClientShare = NO_SHARE, queue_when_full: bool = False) -> Launch:
    """A ready server from the staging's pool if it has one; else queue a cold launch,
    after the launches waiting in the launch queue were served; at capacity, with
    queue_when_full, join that queue (services/launch_queue.py).
    The caller's right is launch()'s to check: doors call launch(), not this. Either way
    the server is share's client's, within its share (domain/shares.py).

    staging may be a copy the caller cached: the claim refuses it if it is stale
    (StaleStaging), and the cold path reads the staging afresh.
    """
    if isinstance(staging, str):
        staging = get_staging(staging, store=store)
    pooled = claim_from_pool(staging, store=store, queue=queue, settings=settings, share=share)
    if pooled is not None:
        return pooled
    if not cold:
        get_staging(staging.name, store=store)  # NotFound if it was deleted, not "empty"
        raise PoolEmpty(staging.name)
    fresh = get_staging(staging.name, store=store)
    # Those who waited first: room that freed goes to them, not to this newcomer.
    serve_queue_if_waiting(store=store, queue=queue, settings=settings)
    try:
        return request_cold_launch(fresh, store=store, queue=queue, settings=settings,
                                   share=share)
    except (CapacityExceeded, QuotaExceeded) as refusal:
        if not (queue_when_full and waits_for_room(refusal)):
            raise
    return join_queue(fresh, store=store, queue=queue, settings=settings, share=share)


def delete_staging(name: str, *, force: bool, store: RedisStore, queue: TaskQueue) -> None:
    """Remove a staging and drain its pool; servers in use block it unless forced.

    The record goes first, the servers after: a launch that reads the staging from then on
    fails, and one that read it before had its server reserved already, so the sweep finds
    it (swept first, a server reserved meanwhile by upkeep became ready and ran on, unseen).
    """
    get_staging(name, store=store)
    in_use = _servers_in_use(name, store=store)
    if in_use and not force:
        raise Conflict("Staging", f"staging {name!r} has {len(in_use)} running server(s); "
                                  "stop them first or delete with ?force=true")
    store.pools.forget(name)
    store.stagings.delete(name)
    retire_unclaimed(name, "retired from the pool: its staging was deleted", store=store,
                     queue=queue)
    for server in _servers_in_use(name, store=store) + _queued(name, store=store):
        request_stop(server.id, store=store, queue=queue)


def _queued(staging_name: str, *, store: RedisStore) -> list[Server]:
    """Its launches waiting in the launch queue: they leave it with their staging."""
    waiting = (store.servers.get(server_id) for server_id in store.launch_queue.waiting())
    return [server for server in waiting if server is not None
            and server.staging == staging_name]


def _servers_in_use(staging_name: str, *, store: RedisStore) -> list[Server]:
    return [server for server in store.servers.active()
            if server.staging == staging_name and not is_pooled_unclaimed(server)]
