"""Cull idle servers, and reconcile Redis, Docker and the proxy after crashes or restarts."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime

from binderq.adapters.redis_store import RedisStore
from binderq.domain.applications import KIND_NOTEBOOK, reports_jupyter_activity
from binderq.domain.builds import lost_builds
from binderq.domain.errors import BinderqError, DependencyDown
from binderq.domain.hosts import on_host
from binderq.domain.lifecycle import (
    Cull,
    CullLimits,
    ObservedContainer,
    Repairs,
    cull_deadline,
    cull_limits,
    forgotten,
    handed_out_at,
    in_use,
    latest_activity,
    plan_culls,
    plan_reconcile,
)
from binderq.domain.models import Server, ServerStatus, parse_time, utcnow
from binderq.domain.spec import (
    LABEL_DEPLOYMENT,
    LABEL_EPOCH,
    LABEL_KIND,
    LABEL_POOLED,
    LABEL_STAGING,
    LABEL_STAGING_VERSION,
    server_of_route,
    server_path,
)
from binderq.services import observe
from binderq.services.builds import fail_build
from binderq.services.ports import Container, Proxy, Runtime, TaskQueue
from binderq.services.servers import server_url
from binderq.settings import Settings
from binderq.tasks import CULL, LAUNCH, RECONCILE, STOP, TaskSpec, TimeLimits

log = logging.getLogger(__name__)

ACTIVITY_PROBES = 8  # notebooks asked for their activity at once
# Seconds all activity probes of one cull run may take together (each ends by its own
# deadline, a few seconds); probes not done by then say nothing, and the run goes on.
PROBE_BUDGET = 45.0
# Other deployments' epochs already logged by this process (reconcile logs each once).
_foreign_logged: set[str] = set()


def lock_ttl(task: TaskSpec) -> float:
    """A run's lock lives as long as its task may run (the hard time limit): not shorter,
    so two runs never overlap; not longer, so a killed run's lock frees when the next run
    may start."""
    limits = task.limits
    assert isinstance(limits, TimeLimits), f"{task.name}'s limits depend on settings"
    return float(limits.hard)


@contextmanager
def exclusive(store: RedisStore, name: str, ttl: float) -> Iterator[bool]:
    """Hold lock name for the block (at most ttl seconds); yields False (and holds nothing)
    if another run has it."""
    holder = secrets.token_hex(8)
    acquired = store.locks.acquire(name, holder, ttl)
    try:
        yield acquired
    finally:
        if acquired:
            store.locks.release(name, holder)


# -- culling ------------------------------------------------------------------------------


def cull_idle_servers(*, store: RedisStore, proxy: Proxy, queue: TaskQueue,
                      activity_of: Callable[[Server], datetime | None]) -> list[Cull]:
    """Stop in-use servers idle past their staging's cull_timeout, or older than max_age.

    Activity comes from the record, the notebook (activity_of; notebooks only) and the
    proxy's route.
    Every in-use server's last_activity and cull_at are brought up to date, so a front end
    can warn its user. One run at a time (a Redis lock); a server is stopped only from
    `ready`, in one atomic step, so it is never culled twice or while starting or stopping.
    A notebook that answers nonsense, or slowly, or not at all, costs only its own
    activity: it is still culled by its record, and every other server as usual.
    """
    with exclusive(store, "cull", lock_ttl(CULL)) as acquired:
        if not acquired:
            return []
        servers = [server for server in store.servers.active() if in_use(server)]
        limits = {staging.name: cull_limits(staging) for staging in store.stagings.list()}
        refreshed = _refresh_activity(servers, store=store, proxy=proxy,
                                      activity_of=activity_of, limits=limits)
        culls = plan_culls(refreshed, now=utcnow(), limits=limits)
        for cull in culls:
            if store.servers.transition(cull.server_id, [ServerStatus.READY],
                                        status=ServerStatus.STOPPING, error=cull.reason):
                log.info("server %s %s", cull.server_id, cull.reason)
                observe.server_culled(store=store)
                queue.enqueue(STOP.name, cull.server_id)
        return culls


def _refresh_activity(servers: list[Server], *, store: RedisStore, proxy: Proxy,
                      activity_of: Callable[[Server], datetime | None],
                      limits: dict[str, CullLimits]) -> list[Server]:
    routes = {server_of_route(path): route
              for path, route in (_routes_or_none(proxy) or {}).items()}
    notebook_activity = _notebook_activity(servers, activity_of)
    refreshed = []
    for server in servers:
        try:
            refreshed.append(_refresh_one(server, store=store, limits=limits,
                                          seen=notebook_activity.get(server.id),
                                          route=routes.get(server.id) or {}))
        except DependencyDown:
            raise
        except Exception:  # one bad record must not stop the run; it is judged as it is
            log.exception("culling: could not bring server %s's activity up to date",
                          server.id)
            refreshed.append(server)
    return refreshed


def _refresh_one(server: Server, *, store: RedisStore, limits: dict[str, CullLimits],
                 seen: datetime | None, route: dict) -> Server:
    now = utcnow()
    last = latest_activity(server, seen, parse_time(route.get("last_activity")), now=now)
    deadline = cull_deadline(handed_out=handed_out_at(server), last_activity=last,
                             limits=limits.get(server.staging, CullLimits()))
    store.servers.transition(server.id, [ServerStatus.READY], last_activity=last,
                             cull_at=deadline)
    return replace(server, last_activity=last)


def _notebook_activity(servers: list[Server],
                       activity_of: Callable[[Server], datetime | None]
                       ) -> dict[str, datetime | None]:
    """What each notebook says of its last activity, ACTIVITY_PROBES asked at once; one
    whose probe fails, or is not done within PROBE_BUDGET, says nothing. Apps without
    Jupyter's status endpoint are not asked: the proxy's route alone says."""
    pool = ThreadPoolExecutor(max_workers=ACTIVITY_PROBES, thread_name_prefix="activity")
    probes: dict[Future, str] = {
        pool.submit(_ask_activity, activity_of, server): server.id
        for server in servers if reports_jupyter_activity(server.kind)}
    done, late = wait(probes, timeout=PROBE_BUDGET)
    pool.shutdown(wait=False, cancel_futures=True)  # a late probe ends by its own deadline
    if late:
        log.warning("culling: %d notebooks did not say their activity within %g s: %s",
                    len(late), PROBE_BUDGET, ", ".join(sorted(probes[f] for f in late)))
    return {probes[future]: future.result() for future in done}


def _ask_activity(activity_of: Callable[[Server], datetime | None],
                  server: Server) -> datetime | None:
    try:
        return activity_of(server)
    except Exception as error:  # the notebook is user code: it may answer anything
        log.warning("culling: server %s did not say its activity: %r", server.id, error)
        return None


def _routes_or_none(proxy: Proxy) -> dict | None:
    try:
        return proxy.routes()
    except DependencyDown as error:
        log.warning("culling without the proxy's activity: %s", error)
        return None


# -- reconcile ----------------------------------------------------------------------------


def reconcile_if_redis_forgot(*, store: RedisStore, queue: TaskQueue) -> bool:
    """Queue a reconcile now if Redis has no epoch: it lost its data (or nothing needed an
    epoch yet), and the servers it forgot are adopted at once rather than at beat's next
    reconcile. Pool upkeep calls this every few seconds; the reconcile writes the epoch."""
    if store.epochs.known():
        return False
    queue.enqueue(RECONCILE.name)
    return True


def reconcile(*, store: RedisStore, runtime: Runtime, proxy: Proxy, queue: TaskQueue,
              settings: Settings, adopt: bool | None = None) -> Repairs | None:
    """Observe Redis, Docker and the proxy; decide repairs in plan_reconcile; make them.

    adopt: take labelled containers Redis does not know as servers rather than remove
    them; by default as BINDERQ_ORPHANS says. Running servers Redis lost with its data
    (their containers carry an earlier epoch of this deployment) are adopted whatever adopt
    says; another deployment's containers (another Redis, same instance name) are only
    reported, as `foreign`. None if another reconcile is running.
    """
    host = settings.host()  # the worker's own: its engine is the one runtime speaks to
    lock = f"reconcile:{host.name}" if settings.many_hosts else "reconcile"
    with exclusive(store, lock, lock_ttl(RECONCILE)) as acquired:
        if not acquired:
            return None
        epoch, _ = store.epochs.current()
        deployment = settings.deployment_id
        observed_at = utcnow()
        containers = [_observed(container) for container in runtime.server_containers()]
        every = {server.id: server for server in store.servers.list()}
        servers, routes = on_this_host(every, set(proxy.routes()), host=host.name,
                                       first=settings.hosts[0].name)
        repairs = plan_reconcile(
            servers=servers, containers=containers, routes=routes, now=utcnow(),
            observed_at=observed_at, stuck_after=settings.launch_timeout + 60,
            adopt_orphans=settings.orphans == "adopt" if adopt is None else adopt,
            deployment=deployment, epoch=epoch)
        if host == settings.hosts[0]:  # builds run on the first host
            repairs.fail_builds = lost_builds(store.builds.in_progress(), now=utcnow(),
                                              build_timeout=settings.build_timeout)
        _log_loss_and_strangers(repairs, containers, epoch=epoch)
        _repair(repairs, servers, store=store, runtime=runtime, proxy=proxy, queue=queue,
                settings=settings)
        return repairs


def on_this_host(servers: dict[str, Server], routes: set[str], *, host: str,
                 first: str) -> tuple[dict[str, Server], set[str]]:
    """What one host's reconcile judges: the servers placed on it, the routes of those, and
    (on the first host only, so that one reconcile does it) routes of servers no one knows.
    With one host: everything."""
    mine = {i: server for i, server in servers.items() if on_host(server.host, host, first)}

    def judged(path: str) -> bool:
        server_id = server_of_route(path)
        return server_id is None or server_id in mine or (
            server_id not in servers and host == first)

    return mine, {path for path in routes if judged(path)}


def _observed(container: Container) -> ObservedContainer:
    labels = container.labels
    return ObservedContainer(container.server_id, container.role, container.running,
                             deployment=labels.get(LABEL_DEPLOYMENT, ""),
                             epoch=labels.get(LABEL_EPOCH, ""))


def _log_loss_and_strangers(repairs: Repairs, containers: list[ObservedContainer], *,
                            epoch: str) -> None:
    lost = {c.epoch for c in containers if c.server_id in repairs.adopt and forgotten(c, epoch)}
    if lost:
        log.error("reconcile: Redis lost its data (its epoch is now %s; these servers were "
                  "started in epoch %s): adopting %d running servers from their containers: "
                  "%s", epoch, ", ".join(sorted(lost)), len(repairs.adopt),
                  ", ".join(sorted(repairs.adopt)))
    for whose in sorted(set(repairs.foreign.values()) - _foreign_logged):
        _foreign_logged.add(whose)
        servers = sorted(i for i, w in repairs.foreign.items() if w == whose)
        log.warning("reconcile: containers of another deployment under this instance name "
                    "(%s; another Redis) are left alone: servers %s", whose, ", ".join(servers))


def _repair(repairs: Repairs, servers: dict[str, Server], *, store: RedisStore,
            runtime: Runtime, proxy: Proxy, queue: TaskQueue, settings: Settings) -> None:
    for server_id, why in repairs.remove_containers.items():
        log.info("reconcile: removing the containers of %s: %s", server_id, why)
        runtime.remove_server(server_id)
    for server_id in repairs.adopt:
        _adopt(server_id, store=store, runtime=runtime, proxy=proxy, settings=settings)
    for server_id, why in repairs.fail_servers.items():
        if store.servers.transition(server_id, [ServerStatus.READY],
                                    status=ServerStatus.FAILED, error=why, stopped_at=utcnow()):
            log.info("reconcile: server %s failed: %s", server_id, why)
            proxy.remove_route(server_path(server_id))
            runtime.remove_server(server_id)
    for server_id in repairs.relaunch:
        queue.enqueue(LAUNCH.name, server_id)
    for server_id in repairs.restop:
        queue.enqueue(STOP.name, server_id)
    for server_id in repairs.add_routes:
        proxy.add_route(server_path(server_id), servers[server_id].target, server=server_id)
    for path, why in repairs.remove_routes.items():
        log.info("reconcile: removing route %s: %s", path, why)
        proxy.remove_route(path)
    for build_id, why in repairs.fail_builds.items():
        fail_build(build_id, why, store=store, settings=settings)


def _adopt(server_id: str, *, store: RedisStore, runtime: Runtime, proxy: Proxy,
           settings: Settings) -> None:
    """A server record rebuilt from a running container's labels, routed again.

    A pooled one is taken as claimed: after Redis was lost nobody can tell whether it was
    handed out, and handing it out twice is what must never happen.
    """
    try:
        labels, target, image_id = runtime.adoption_facts(server_id)
    except BinderqError as error:
        log.warning("reconcile: cannot adopt %s: %s", server_id, error)
        return
    now = utcnow()
    pooled = labels.get(LABEL_POOLED) == "true"
    server = Server(id=server_id, staging=labels.get(LABEL_STAGING, ""),
                    staging_version=int(labels.get(LABEL_STAGING_VERSION, "0")),
                    kind=labels.get(LABEL_KIND, KIND_NOTEBOOK),
                    status=ServerStatus.READY, pooled=pooled,
                    claimed_at=now if pooled else None, ready_at=now, last_activity=now,
                    status_changed_at=now, url=server_url(settings, server_id), target=target,
                    host=settings.host().name, image_id=image_id or None)
    store.servers.adopt(server)
    proxy.add_route(server_path(server_id), target, server=server_id)
    log.info("reconcile: adopted server %s of staging %s", server_id, server.staging)
