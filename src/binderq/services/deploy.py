"""Deploy: launch from the pool when it has a server, else cold; delete a staging with its
pool and servers. Composes the servers and pools services."""

from __future__ import annotations

from binderq.adapters.redis_store import RedisStore
from binderq.domain.errors import Conflict
from binderq.domain.models import Staging
from binderq.domain.pools import is_pooled_unclaimed
from binderq.services.pools import claim_from_pool, retire_unclaimed
from binderq.services.ports import TaskQueue
from binderq.services.servers import Launch, request_cold_launch, request_stop
from binderq.services.stagings import get_staging
from binderq.settings import Settings


def request_launch(staging: Staging | str, *, store: RedisStore, queue: TaskQueue,
                   settings: Settings) -> Launch:
    """A ready server from the staging's pool if it has one; else queue a cold launch.

    staging may be a copy the caller cached: the claim refuses it if it is stale
    (StaleStaging), and the cold path reads the staging afresh.
    """
    if isinstance(staging, str):
        staging = get_staging(staging, store=store)
    pooled = claim_from_pool(staging, store=store, queue=queue, settings=settings)
    if pooled is not None:
        return pooled
    fresh = get_staging(staging.name, store=store)
    return request_cold_launch(fresh, store=store, queue=queue, settings=settings)


def delete_staging(name: str, *, force: bool, store: RedisStore, queue: TaskQueue) -> None:
    """Remove a staging and drain its pool; servers in use block it unless forced."""
    get_staging(name, store=store)
    running = [server for server in store.servers.active()
               if server.staging == name and not is_pooled_unclaimed(server)]
    if running and not force:
        raise Conflict("Staging", f"staging {name!r} has {len(running)} running server(s); "
                                  "stop them first or delete with ?force=true")
    retire_unclaimed(name, "retired from the pool: its staging was deleted", store=store,
                     queue=queue)
    for server in running:
        request_stop(server.id, store=store, queue=queue)
    store.pools.forget(name)
    store.stagings.delete(name)
