"""Who is idle, and what a crash or restart left behind: pure decisions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from binderq.domain.models import Server, ServerStatus, Staging
from binderq.domain.spec import server_of_route


class CullLimits(NamedTuple):
    """A staging's culling limits, in seconds; by default the Staging defaults."""

    cull_timeout: int = Staging.cull_timeout  # a dataclass keeps its defaults on the class
    max_age: int = Staging.max_age


def cull_limits(staging: Staging | None) -> CullLimits:
    """The staging's limits; the defaults for a server whose staging was deleted."""
    return CullLimits(staging.cull_timeout, staging.max_age) if staging else CullLimits()


def in_use(server: Server) -> bool:
    """Handed out and running: cold servers once ready, pooled ones once claimed."""
    return server.status == ServerStatus.READY and (not server.pooled or
                                                    server.claimed_at is not None)


def handed_out_at(server: Server) -> datetime:
    return server.claimed_at or server.ready_at or server.created_at


@dataclass(frozen=True)
class Cull:
    server_id: str
    reason: str


def latest_activity(server: Server, *seen: datetime | None) -> datetime:
    """The newest sign of use: the record's, the notebook's, the proxy's. Never before the
    server was handed out, so a pooled server's idle clock starts at its claim."""
    moments = [moment for moment in (server.last_activity, *seen) if moment is not None]
    return max([handed_out_at(server), *moments])


def cull_deadline(*, handed_out: datetime, last_activity: datetime,
                  limits: CullLimits) -> datetime:
    """When an in-use server is culled: cull_timeout after its last activity, or max_age
    after it was handed out, whichever comes first."""
    return min(last_activity + timedelta(seconds=limits.cull_timeout),
               handed_out + timedelta(seconds=limits.max_age))


def plan_culls(servers: list[Server], *, now: datetime,
               limits: dict[str, CullLimits]) -> list[Cull]:
    """In-use servers past their cull_deadline (limits: by staging name); servers starting,
    stopping or waiting in a pool never."""
    culls = []
    for server in servers:
        if not in_use(server):
            continue
        staging_limits = limits.get(server.staging, CullLimits())
        handed_out, last = handed_out_at(server), latest_activity(server)
        if now <= cull_deadline(handed_out=handed_out, last_activity=last,
                                limits=staging_limits):
            continue
        if now - handed_out > timedelta(seconds=staging_limits.max_age):
            culls.append(Cull(server.id, f"culled: older than max_age "
                                         f"({staging_limits.max_age} s)"))
        else:
            idle = (now - last).total_seconds()
            culls.append(Cull(server.id, f"culled: idle for {int(idle)} s "
                                         f"(cull_timeout {staging_limits.cull_timeout} s)"))
    return culls


@dataclass(frozen=True)
class ObservedContainer:
    server_id: str
    role: str
    running: bool


@dataclass
class Repairs:
    """What reconcile does; each entry says why."""

    remove_containers: dict[str, str] = field(default_factory=dict)  # server id -> why
    adopt: set[str] = field(default_factory=set)  # server ids of containers to adopt
    fail_servers: dict[str, str] = field(default_factory=dict)
    relaunch: set[str] = field(default_factory=set)
    restop: set[str] = field(default_factory=set)
    add_routes: set[str] = field(default_factory=set)  # server ids
    remove_routes: dict[str, str] = field(default_factory=dict)  # path -> why
    fail_builds: dict[str, str] = field(default_factory=dict)  # build id -> why

    def __bool__(self) -> bool:
        return any(vars(self).values())


def plan_reconcile(*, servers: dict[str, Server], containers: list[ObservedContainer],
                   routes: set[str], now: datetime, observed_at: datetime,
                   adopt_orphans: bool, stuck_after: float) -> Repairs:
    """Compare Redis (servers), Docker (containers) and the proxy (routes); decide repairs.

    Containers and routes are observed first (at observed_at), servers after, so every
    container's server was already written; a server that became ready after observed_at
    is not judged by containers observed before it. servers: every server Redis knows,
    terminal ones included. stuck_after: seconds after which a launch or stop that should
    be over is run again (both are idempotent).
    """
    repairs = Repairs()
    routed = {server_of_route(path) for path in routes}
    running_notebooks = {c.server_id for c in containers if c.role == "notebook" and c.running}
    for container in containers:
        server = servers.get(container.server_id)
        if server is None:
            if adopt_orphans and container.role == "notebook" and container.running:
                repairs.adopt.add(container.server_id)
            elif not adopt_orphans or container.role != "service":
                repairs.remove_containers[container.server_id] = "Redis does not know it"
        elif server.status.is_terminal:
            repairs.remove_containers[container.server_id] = f"its server is {server.status}"
    for server in servers.values():
        changed = server.status_changed_at or server.created_at
        if changed >= observed_at:
            continue  # changed since containers and routes were observed
        _repair_server(server, repairs, running=server.id in running_notebooks,
                       routed=server.id in routed, now=now,
                       stuck_after=stuck_after)
    for path in routes:
        server_id = server_of_route(path)
        if server_id is None:
            continue
        server = servers.get(server_id)
        if server is None and server_id not in repairs.adopt:
            repairs.remove_routes[path] = "no such server"
        elif server is not None and server.status.is_terminal:
            repairs.remove_routes[path] = f"its server is {server.status}"
    return repairs


def _repair_server(server: Server, repairs: Repairs, *, running: bool, routed: bool,
                   now: datetime, stuck_after: float) -> None:
    age = (now - (server.status_changed_at or server.created_at)).total_seconds()
    if server.status == ServerStatus.READY:
        if not running:
            repairs.fail_servers[server.id] = "its container is gone"
        elif not routed:
            repairs.add_routes.add(server.id)
    elif server.status in (ServerStatus.PENDING, ServerStatus.STARTING) and age > stuck_after:
        repairs.relaunch.add(server.id)
    elif server.status == ServerStatus.STOPPING and age > stuck_after:
        repairs.restop.add(server.id)
