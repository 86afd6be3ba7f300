"""Pool: servers pre-started per staging, so that a launch takes milliseconds."""

from __future__ import annotations

import logging
import secrets

from binderq.adapters.redis_store import RedisStore
from binderq.domain.errors import (
    CapacityExceeded,
    DependencyDown,
    FieldError,
    InvalidInput,
    NotFound,
    QuotaExceeded,
)
from binderq.domain.lifecycle import cull_deadline, cull_limits
from binderq.domain.models import Server, ServerStatus, Staging, StagingStatus, utcnow
from binderq.domain.pools import (
    FAILURES_BEFORE_BACKOFF,
    Pool,
    PoolPlan,
    is_pooled_unclaimed,
    plan_pool,
)
from binderq.domain.shares import NO_SHARE, ClientShare
from binderq.domain.tokens import new_server_id, new_task_id, server_token
from binderq.services.hosts import running_servers
from binderq.services.ports import Runtime, TaskQueue
from binderq.services.servers import Launch
from binderq.services.stagings import get_staging
from binderq.settings import Settings
from binderq.tasks import LAUNCH, REPLENISH, STOP

log = logging.getLogger(__name__)

LOCK_TTL = 60.0  # seconds; upkeep only reads and enqueues, so a run takes well under this
MAX_ROUNDS = 5  # upkeep runs again while replenishes arrived during a run, this many times
QUEUED_TTL = 30  # seconds a queued replenish keeps others from being queued


# -- API side -----------------------------------------------------------------------------


def set_pool_size(staging_name: str, size: int, *, store: RedisStore, queue: TaskQueue,
                  settings: Settings) -> Pool:
    """Set how many servers the pool keeps ready; upkeep starts or stops servers to match."""
    staging = get_staging(staging_name, store=store)
    check_pool_size(size, settings, staging_max=staging.max_servers)
    store.pools.set_size(staging_name, size)
    request_replenish(staging_name, store=store, queue=queue)
    return get_pool(staging_name, store=store)


def check_pool_size(size: int, settings: Settings, *, resource: str = "Pool",
                    field: str = "size", staging_max: int | None = None) -> None:
    """A pool may not be larger than the service's capacity, nor its staging's max_servers."""
    if size > settings.max_servers:
        raise InvalidInput(resource, errors=[FieldError(
            field, "invalid", f"a pool of {size} is larger than the service's capacity of "
                              f"{settings.max_servers} servers (BINDERQ_MAX_SERVERS)")])
    if staging_max is not None and size > staging_max:
        raise InvalidInput(resource, errors=[FieldError(
            field, "invalid", f"a pool of {size} is larger than its staging's max_servers "
                              f"({staging_max})")])


def get_pool(staging_name: str, *, store: RedisStore) -> Pool:
    counters = store.pools.counters(staging_name)
    if counters is None:
        raise NotFound("Pool", staging_name)
    staging = store.stagings.get(staging_name)
    version = staging.version if staging else None
    servers = [s for s in store.servers.active() if s.staging == staging_name and s.pooled]
    # Waiting servers of an older version are being retired: the claim never hands them out.
    waiting = [s for s in servers if is_pooled_unclaimed(s) and s.staging_version == version]
    return Pool(
        staging=staging_name,
        size=counters.get("size", 0),
        ready=sum(s.status == ServerStatus.READY for s in waiting),
        starting=sum(s.status in (ServerStatus.PENDING, ServerStatus.STARTING)
                     for s in waiting),
        in_use=sum(s.claimed_at is not None and s.status == ServerStatus.READY
                   for s in servers),
        hits=counters.get("hits", 0),
        misses=counters.get("misses", 0),
    )


def list_pools(*, store: RedisStore) -> list[Pool]:
    pools = []
    for name in store.pools.names():
        try:
            pools.append(get_pool(name, store=store))
        except NotFound:
            continue
    return pools


def drain_pool(staging_name: str, *, store: RedisStore, queue: TaskQueue) -> Pool:
    """Size 0: every unclaimed pooled server is stopped; claimed ones run on."""
    if store.pools.counters(staging_name) is None:
        raise NotFound("Pool", staging_name)
    store.pools.set_size(staging_name, 0)
    retire_unclaimed(staging_name, "retired from the pool: the pool was deleted",
                     store=store, queue=queue)
    return get_pool(staging_name, store=store)


def retire_unclaimed(staging_name: str, reason: str, *, store: RedisStore,
                     queue: TaskQueue) -> None:
    for server in store.servers.active():
        if server.staging == staging_name and is_pooled_unclaimed(server) \
                and store.pools.retire(server, reason):
            queue.enqueue(STOP.name, server.id)


def claim_from_pool(staging: Staging, *, store: RedisStore, queue: TaskQueue,
                    settings: Settings, share: ClientShare = NO_SHARE) -> Launch | None:
    """A ready server from the staging's pool, claimed atomically for share's client (who
    must hold fewer than its max_servers, else QuotaExceeded); None if it has none.

    StaleStaging if staging is not the current version: the caller decided (who may launch,
    when it is culled) on an old one. No Docker or proxy call: pooled servers were routed
    when they became ready, and their token, derived from the secret, is known to no one
    before this answer.
    """
    now = utcnow()
    claim = store.pools.claim(
        staging.name, queued_ttl=QUEUED_TTL, expected_version=staging.version,
        client=share.client, client_limit=share.max_servers, hosts_checked=settings.many_hosts,
        claimed_at=now, last_activity=now,
        cull_at=cull_deadline(handed_out=now, last_activity=now, limits=cull_limits(staging)),
    )
    if claim is None:
        return None
    if claim.queue_replenish:
        queue.enqueue(REPLENISH.name, staging.name)
    return Launch(claim.server, server_token(settings.secret_key, claim.server.id))


def request_replenish(staging_name: str, *, store: RedisStore, queue: TaskQueue) -> None:
    """Queue a replenish unless one is queued already: that one has yet to observe the
    pool, so it will see this change (a running one frees the slot before it observes)."""
    if store.pools.claim_replenish_slot(staging_name, QUEUED_TTL):
        queue.enqueue(REPLENISH.name, staging_name)


# -- worker side --------------------------------------------------------------------------


def replenish_pool(staging_name: str, *, store: RedisStore, runtime: Runtime, queue: TaskQueue,
                   settings: Settings) -> PoolPlan | None:
    """Observe the pool, its containers and the staging; decide; act. Under a lock.

    A replenish that arrives while another runs marks the pool dirty (before trying the
    lock), and the runner goes round again, so no request for upkeep is lost.
    """
    store.pools.release_replenish_slot(staging_name)
    holder = secrets.token_hex(8)
    plan = None
    for _ in range(MAX_ROUNDS):
        store.pools.mark_dirty(staging_name)
        if not store.locks.acquire(f"pool:{staging_name}", holder, LOCK_TTL):
            return plan  # the holder sees the dirty mark and runs again
        try:
            store.pools.take_dirty(staging_name)
            plan = _upkeep_once(staging_name, store=store, runtime=runtime, queue=queue,
                                settings=settings)
        finally:
            store.locks.release(f"pool:{staging_name}", holder)
        if not store.pools.take_dirty(staging_name):
            return plan
    return plan


def upkeep_all_pools(*, store: RedisStore, runtime: Runtime, queue: TaskQueue,
                     settings: Settings) -> dict[str, PoolPlan | None]:
    """Replenish every pool (celery beat runs this), and retire pooled servers whose pool
    is gone: a staging deleted while upkeep was starting a server for it."""
    orphaned = {server.staging for server in store.servers.active()
                if is_pooled_unclaimed(server)}
    names = sorted(set(store.pools.names()) | orphaned)
    return {name: replenish_pool(name, store=store, runtime=runtime, queue=queue,
                                 settings=settings) for name in names}


def _upkeep_once(staging_name: str, *, store: RedisStore, runtime: Runtime, queue: TaskQueue,
                 settings: Settings) -> PoolPlan:
    staging = store.stagings.get(staging_name)
    counters = store.pools.counters(staging_name)
    servers = [s for s in store.servers.active()
               if s.staging == staging_name and is_pooled_unclaimed(s)]
    if staging is None or counters is None:
        plan = PoolPlan(retire={s.id: "retired from the pool: its staging was deleted"
                                for s in servers})
    else:
        running = running_servers(servers, store=store, runtime=runtime, settings=settings)
        failures = store.pools.recent_failures(staging_name)
        if failures >= FAILURES_BEFORE_BACKOFF:
            log.warning("pool %s: %d launches failed lately; starting one at a time",
                        staging_name, failures)
        plan = plan_pool(size=counters.get("size", 0), version=staging.version,
                         staging_ready=staging.status == StagingStatus.READY,
                         max_age=staging.max_age, now=utcnow(), servers=servers,
                         running=running, recent_failures=failures)
    _act(plan, staging, servers, store=store, queue=queue, settings=settings)
    return plan


def _act(plan: PoolPlan, staging: Staging | None, servers: list[Server], *, store: RedisStore,
         queue: TaskQueue, settings: Settings) -> None:
    by_id = {server.id: server for server in servers}
    for server_id, reason in plan.retire.items():
        if store.pools.retire(by_id[server_id], reason):
            log.info("pool %s: retiring %s (%s)", by_id[server_id].staging, server_id, reason)
            queue.enqueue(STOP.name, server_id)
    for _ in range(plan.start if staging else 0):
        if not _start_pooled_server(staging, store=store, queue=queue, settings=settings):
            break


def _start_pooled_server(staging: Staging, *, store: RedisStore, queue: TaskQueue,
                         settings: Settings) -> bool:
    server = Server(id=new_server_id(), staging=staging.name, staging_version=staging.version,
                    pooled=True, task_id=new_task_id(), kind=staging.kind)
    try:
        store.servers.reserve(server, settings.max_servers,
                              staging_limit=staging.max_servers or 0, hosts=settings.hosts)
    except (CapacityExceeded, QuotaExceeded, DependencyDown) as full:
        log.warning("pool %s: cannot start more servers: %s", staging.name, full)
        return False
    queue.enqueue(LAUNCH.name, server.id, task_id=server.task_id, host=server.host)
    return True
