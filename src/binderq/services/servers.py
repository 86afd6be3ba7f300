"""One server's life: its cold launch reserved and queued (API side), its containers
started, probed and routed (worker side), and its stop. Who may launch is deploy.py's."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from binderq.adapters.redis_store import RedisStore
from binderq.domain.applications import readiness_probe
from binderq.domain.errors import BinderqError, Conflict, ImageMissing, LaunchFailed, NotFound
from binderq.domain.lifecycle import cull_deadline, cull_limits
from binderq.domain.models import (
    ACTIVE_SERVER_STATUSES,
    Server,
    ServerStatus,
    Staging,
    StagingStatus,
    utcnow,
)
from binderq.domain.pools import FAILURE_WINDOW
from binderq.domain.shares import NO_SHARE, ClientShare
from binderq.domain.spec import ServerSpec, server_path, server_spec
from binderq.domain.staging_rules import refusal, staging_problems
from binderq.domain.tokens import new_server_id, new_task_id, server_token
from binderq.services import observe
from binderq.services.images import ensure_on_host, uses_registry
from binderq.services.ports import Proxy, ReadinessProbe, Runtime, TaskQueue
from binderq.settings import Settings
from binderq.tasks import LAUNCH, STOP

log = logging.getLogger(__name__)

# Runs of one server's launch before it is given up: a launch whose worker dies is delivered
# again (acks_late), and reconcile runs stuck ones again; neither may loop for ever.
MAX_LAUNCH_ATTEMPTS = 3


@dataclass(frozen=True)
class Launch:
    """What a launch answers: the server (pooled and ready, or pending) and its token."""

    server: Server
    token: str


def server_url(settings: Settings, server_id: str) -> str:
    return f"{settings.public_url_base}{server_path(server_id)}"


# -- API side: validate, write, enqueue ---------------------------------------------------


def request_cold_launch(staging: Staging, *, store: RedisStore, queue: TaskQueue,
                        settings: Settings, share: ClientShare = NO_SHARE) -> Launch:
    """Reserve a place for a new server of a ready staging, for share's client, and queue
    its launch. The client's, the staging's and the service's limits are checked with the
    reservation, in one step (QuotaExceeded, CapacityExceeded)."""
    staging_name = staging.name
    if staging.status == StagingStatus.STAGING:
        raise Conflict("Staging", f"staging {staging_name!r} is not ready yet (status: staging);"
                                  f" poll GET /api/stagings/{staging_name} until it is ready")
    if staging.status == StagingStatus.FAILED:
        raise Conflict("Staging", f"staging {staging_name!r} failed: {staging.error}; "
                                  "fix it and PUT it again")
    server = Server(id=new_server_id(), staging=staging.name, staging_version=staging.version,
                    task_id=new_task_id(), client=share.client, kind=staging.kind)
    store.servers.reserve(server, settings.max_servers, staging_limit=staging.max_servers or 0,
                          client_limit=share.max_servers, hosts=settings.hosts)
    try:
        queue.enqueue(LAUNCH.name, server.id, task_id=server.task_id, host=server.host)
    except BinderqError as error:
        store.servers.transition(server.id, [ServerStatus.PENDING], status=ServerStatus.FAILED,
                                 error=f"could not queue the launch: {error}")
        raise
    return Launch(server, server_token(settings.secret_key, server.id))


def get_server(server_id: str, *, store: RedisStore) -> Server:
    server = store.servers.get(server_id)
    if server is None:
        raise NotFound("Server", server_id)
    return server


def request_stop(server_id: str, *, store: RedisStore, queue: TaskQueue) -> Server:
    """Mark a server stopping and queue the removal of its containers and route. A queued
    one leaves the launch queue: `stopped` at once, no container ever made."""
    server = get_server(server_id, store=store)
    if server.status == ServerStatus.QUEUED:
        left = _leave_queue(server_id, store=store)
        if left is not None:
            return left
        server = get_server(server_id, store=store)  # promoted meanwhile: stopped as any
    if server.status == ServerStatus.STOPPED:
        return server
    stoppable = [*ACTIVE_SERVER_STATUSES, ServerStatus.FAILED]
    stopping = store.servers.transition(server_id, stoppable, status=ServerStatus.STOPPING)
    queue.enqueue(STOP.name, server_id)
    return stopping or get_server(server_id, store=store)


def _leave_queue(server_id: str, *, store: RedisStore) -> Server | None:
    left = store.servers.transition(server_id, [ServerStatus.QUEUED],
                                    status=ServerStatus.STOPPED, stopped_at=utcnow(),
                                    error="left the launch queue before it was served")
    if left is not None:
        store.launch_queue.forget(server_id)
    return left


# -- worker side: containers, readiness, route --------------------------------------------


def launch_server(server_id: str, *, store: RedisStore, runtime: Runtime, proxy: Proxy,
                  probe: ReadinessProbe, settings: Settings) -> Server | None:
    """Start a pending server's containers, wait until its notebook answers, route it.

    Safe to run twice (redelivery): the containers are found by name, and a server that
    another run already finished, or that was stopped meanwhile, is left as it is.
    """
    server = store.servers.get(server_id)
    launching = [ServerStatus.PENDING, ServerStatus.STARTING]
    if server is None or server.status not in launching:
        return server  # finished, stopping or gone: nothing to do
    if server.launch_attempts >= MAX_LAUNCH_ATTEMPTS:
        reason = LaunchFailed(f"gave up after {server.launch_attempts} attempts: each ended "
                              "without a result (its worker was killed or timed out)")
        return _fail_launch(server_id, reason, store=store, runtime=runtime, proxy=proxy)
    server = store.servers.transition(server_id, launching, status=ServerStatus.STARTING,
                                      launch_attempts=server.launch_attempts + 1)
    if server is None:
        return store.servers.get(server_id)
    try:
        spec, target = _start_containers(server, store=store, runtime=runtime, probe=probe,
                                         settings=settings)
        proxy.add_route(spec.base_url, target, server=server_id)
    except Exception as error:  # every failure ends the same way: clean up, say why
        return _fail_launch(server_id, error, store=store, runtime=runtime, proxy=proxy)
    return _mark_ready(server, target, spec.notebook.image, store=store, runtime=runtime,
                       proxy=proxy, settings=settings)


def _image_missing(staging: Staging, image_id: str, host: str,
                   settings: Settings) -> LaunchFailed:
    """Why a server cannot start on its pinned image: gone from the engine, or, with many
    hosts and no registry, never brought to this host."""
    staged = f"staging {staging.name!r} runs image {image_id} (staged from " \
             f"{_staged_from(staging, image_id)})"
    if settings.many_hosts and not settings.registry:
        return LaunchFailed(f"{staged}, which host {host or settings.host().name} does not "
                            "have: with more than one Docker host, set BINDERQ_REGISTRY so "
                            "that images reach every host (docs/scaling.md)")
    return LaunchFailed(f"{staged}, which is no longer on the Docker engine; PUT the staging "
                        "again to stage what its image names now")


def _staged_from(staging: Staging, image_id: str) -> str:
    """The tag an image id was staged from: the staging's image, or one service's."""
    for service in staging.services:
        if staging.service_image_ids.get(service.name) == image_id:
            return f"{service.image}, service {service.name}"
    return str(staging.image)


def _start_containers(server: Server, *, store: RedisStore, runtime: Runtime,
                      probe: ReadinessProbe, settings: Settings) -> tuple[ServerSpec, str]:
    staging = checked_staging(server.staging, store=store)
    token = server_token(settings.secret_key, server.id)
    spec = server_spec(staging, server.id, token, instance=settings.instance,
                       pooled=server.pooled, allow_origin=settings.cors_allow_origin,
                       uid=settings.server_uid, epoch=store.epochs.current()[0],
                       deployment=settings.deployment_id)
    if uses_registry(settings):  # this host's first server of the staging pulls its images
        ensure_on_host(staging, host=server.host or settings.host().name, store=store,
                       runtime=runtime, settings=settings)
    try:
        runtime.start_server(spec)
    except ImageMissing as missing:
        # Never the tag instead: it may name other software now.
        raise _image_missing(staging, missing.image, server.host, settings) from missing
    host, port = runtime.published_address(spec.notebook.name, staging.port)
    target = f"http://{host}:{port}"

    def why_stopped() -> str | None:
        state = runtime.container_state(spec.notebook.name)
        if state is None:
            return "it was removed"
        return None if state.running else state.why_stopped()

    try:
        probe(f"{target}{spec.base_url}", token, timeout=settings.launch_timeout,
              still_running=why_stopped, check=readiness_probe(staging.kind, staging.probe))
    except BinderqError as error:
        logs = runtime.logs_tail(spec.notebook.name).strip()
        tail = f"; its last log lines:\n{logs}" if logs else ""
        raise LaunchFailed(f"{error}{tail}") from error
    return spec, target


def checked_staging(name: str, *, store: RedisStore) -> Staging:
    """The ready staging a server is made of, checked again against the rules the API
    applies: Redis is trusted with state, not with what may be mounted or run."""
    try:
        staging = store.stagings.get(name)
    except (TypeError, ValueError, KeyError, AttributeError) as error:  # a malformed record
        raise LaunchFailed(f"refused: the record of staging {name!r} is malformed "
                           f"({type(error).__name__}); PUT it again") from error
    if staging is None:
        raise LaunchFailed(f"staging {name!r} was deleted")
    problems = staging_problems(staging)
    if problems:
        raise LaunchFailed(f"staging {name!r}: {refusal(problems)}")
    if staging.status != StagingStatus.READY:
        raise LaunchFailed(f"staging {name!r} is {staging.status}")
    return staging


def _mark_ready(server: Server, target: str, image_id: str, *, store: RedisStore,
                runtime: Runtime, proxy: Proxy, settings: Settings) -> Server | None:
    """starting -> ready. A pooled server joins its pool; a cold one's idle clock starts."""
    server_id = server.id
    now = utcnow()
    idle_clock = {}
    if not server.pooled:  # handed out now: its idle clock starts
        limits = cull_limits(store.stagings.get(server.staging))
        idle_clock = {"last_activity": now,
                      "cull_at": cull_deadline(handed_out=now, last_activity=now, limits=limits)}
    ready = store.servers.mark_ready(server, url=server_url(settings, server_id), target=target,
                                     ready_at=now, image_id=image_id, **idle_clock)
    if ready is not None:
        observe.server_ready(ready, store=store)
        return ready
    current = store.servers.get(server_id)
    if current is None or current.status != ServerStatus.READY:
        # Stopped while starting: what this run made must not outlive the server.
        _remove_everything(server_id, runtime=runtime, proxy=proxy)
    return current


def _fail_launch(server_id: str, error: Exception, *, store: RedisStore,
                 runtime: Runtime, proxy: Proxy) -> Server | None:
    reason = str(error) if isinstance(error, BinderqError) else f"unexpected error: {error!r}"
    log.warning("launch of server %s failed: %s", server_id, reason)
    try:
        _remove_everything(server_id, runtime=runtime, proxy=proxy)
    except Exception as cleanup_error:  # reconcile removes what is left
        log.warning("cleanup after failed launch of %s failed: %s", server_id, cleanup_error)
    failed = store.servers.transition(server_id, [ServerStatus.PENDING, ServerStatus.STARTING],
                                      status=ServerStatus.FAILED, error=reason,
                                      stopped_at=utcnow())
    if failed is not None and failed.pooled:
        store.pools.count_failure(failed.staging, FAILURE_WINDOW)
    return store.servers.get(server_id)


def stop_server(server_id: str, *, store: RedisStore, runtime: Runtime,
                proxy: Proxy) -> Server | None:
    """Worker side: remove the route, the containers and the network, then mark stopped.

    Raises DependencyDown if Docker or the proxy is unreachable, so the task is retried;
    the server stays `stopping` until it succeeds.
    """
    server = store.servers.get(server_id)
    if server is None or server.status == ServerStatus.STOPPED:
        return server
    if server.status not in (ServerStatus.STOPPING, ServerStatus.FAILED):
        server = store.servers.transition(server_id, ACTIVE_SERVER_STATUSES,
                                          status=ServerStatus.STOPPING) or server
    # A failed one stays failed (and says why) until its containers are gone: its host may
    # be down, and this task retried until it is back.
    _remove_everything(server_id, runtime=runtime, proxy=proxy)
    stopped = store.servers.transition(server_id, [ServerStatus.STOPPING, ServerStatus.FAILED],
                                       status=ServerStatus.STOPPED, stopped_at=utcnow())
    return stopped or store.servers.get(server_id)


def _remove_everything(server_id: str, *, runtime: Runtime, proxy: Proxy) -> None:
    """Remove the route and the containers; try both, then raise the first failure."""
    failures = []
    for remove in (lambda: proxy.remove_route(server_path(server_id)),
                   lambda: runtime.remove_server(server_id)):
        try:
            remove()
        except BinderqError as error:
            failures.append(error)
    if failures:
        raise failures[0]
