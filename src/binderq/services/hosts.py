"""Docker hosts' life: each host's worker proves that its engine answers (a heartbeat), pool
upkeep reads which servers run where from those proofs, and a host that stops proving it
loses its pooled servers at once (refilled elsewhere) and all its servers after a grace."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from binderq.adapters.redis_store import RedisStore
from binderq.domain.errors import BinderqError
from binderq.domain.hosts import HEARTBEAT_TTL, Host, is_lost, loss_reason, on_host
from binderq.domain.models import ACTIVE_SERVER_STATUSES, Server, ServerStatus, utcnow
from binderq.domain.pools import is_pooled_unclaimed
from binderq.domain.spec import server_path
from binderq.services.ports import Proxy, Runtime, TaskQueue
from binderq.settings import Settings
from binderq.tasks import STOP

log = logging.getLogger(__name__)


def beat(host: Host, *, store: RedisStore, runtime: Runtime) -> bool:
    """One proof of life of host, with the servers whose notebooks run there; False (and no
    proof) when its engine does not answer."""
    try:
        runtime.ping(timeout=2.0)
        running = {c.server_id for c in runtime.server_containers()
                   if c.role == "notebook" and c.running}
    except BinderqError as error:
        log.warning("host %s: no heartbeat: %s", host.name, error)
        return False
    store.hosts.beat(host.name, running, at=utcnow(), ttl=HEARTBEAT_TTL)
    return True


def running_servers(servers: list[Server], *, store: RedisStore, runtime: Runtime,
                    settings: Settings) -> set[str]:
    """Ids of servers whose notebook runs. With one host, as its engine says now; with more,
    as each live host's last proof of life said, and servers that changed since that proof
    are given the benefit of the doubt. A host that is down runs nothing."""
    if not settings.many_hosts:
        return {c.server_id for c in runtime.server_containers()
                if c.role == "notebook" and c.running}
    first = settings.hosts[0].name
    running: set[str] = set()
    for host in settings.hosts:
        seen = store.hosts.running(host.name)
        if seen is None:
            continue
        ids, at = seen
        running |= ids
        running |= {s.id for s in servers if on_host(s.host, host.name, first)
                    and (s.status_changed_at or s.created_at) >= at}
    return running


@dataclass
class HostLoss:
    """What one watch did: pooled servers retired from down hosts, servers given up."""

    down: dict[str, datetime] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def watch_hosts(*, store: RedisStore, proxy: Proxy, queue: TaskQueue, settings: Settings,
                now: datetime | None = None) -> HostLoss:
    """For each host that is down: take its unclaimed pooled servers out of their pools now
    (upkeep starts others on the hosts that are up); once it has been down HOST_LOSS_GRACE,
    mark every server it had failed, naming the host, and remove their routes. With one host
    nothing is done: there is nowhere else to go, and reconcile repairs as before."""
    loss = HostLoss()
    if not settings.many_hosts:
        return loss
    now = now or utcnow()
    names = [host.name for host in settings.hosts]
    down = [name for name in names if name not in store.hosts.up(names)]
    if not down:
        return loss
    loss.down = {name: store.hosts.down_since(name, now) for name in down}
    for server in store.servers.active():
        host = server.host or names[0]
        if host not in loss.down:
            continue
        if is_lost(loss.down[host], now):
            _give_up(server, loss_reason(host, loss.down[host]), store=store, proxy=proxy,
                     loss=loss)
        elif is_pooled_unclaimed(server) and store.pools.retire(
                server, f"retired from the pool: host {host} is down"):
            loss.retired.append(server.id)
            queue.enqueue(STOP.name, server.id, host=host)  # runs when the host is back
    if loss.retired or loss.failed:
        log.warning("hosts down %s: retired %s from pools; failed %s", sorted(loss.down),
                    loss.retired, loss.failed)
    return loss


def _give_up(server: Server, reason: str, *, store: RedisStore, proxy: Proxy,
             loss: HostLoss) -> None:
    if store.servers.transition(server.id, ACTIVE_SERVER_STATUSES, status=ServerStatus.FAILED,
                                error=reason, stopped_at=utcnow()) is None:
        return
    loss.failed.append(server.id)
    try:
        proxy.remove_route(server_path(server.id))
    except BinderqError as error:  # reconcile removes routes of failed servers
        log.warning("host loss: route of %s stays for reconcile: %s", server.id, error)
