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


def latest_activity(server: Server, *seen: datetime | None, now: datetime) -> datetime:
    """The newest sign of use: the record's, the notebook's, the proxy's. Never before the
    server was handed out, so a pooled server's idle clock starts at its claim; never after
    now, so a notebook that claims activity in the future cannot keep itself alive."""
    moments = [moment for moment in (server.last_activity, *seen) if moment is not None]
    return min(max([handed_out_at(server), *moments]), max(now, handed_out_at(server)))


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
        handed_out, last = handed_out_at(server), latest_activity(server, now=now)
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
    # Who made it and in which epoch of their Redis (LABEL_DEPLOYMENT, LABEL_EPOCH); empty
    # on containers made before binderq labelled them.
    deployment: str = ""
    epoch: str = ""


def made_by_another(container: ObservedContainer, deployment: str) -> bool:
    """Whether another deployment (another Redis, same instance name) made the container:
    it is theirs to stop, never ours to remove or adopt."""
    return bool(container.deployment) and container.deployment != deployment


def forgotten(container: ObservedContainer, epoch: str) -> bool:
    """Made by this deployment in an earlier epoch: its Redis lost its data since, so a
    server of it that Redis does not know was forgotten, not never written."""
    return bool(container.epoch) and container.epoch != epoch


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
    # Containers another deployment made (server id -> whose): reported, never touched.
    foreign: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(vars(self).values())


def plan_reconcile(*, servers: dict[str, Server], containers: list[ObservedContainer],
                   routes: set[str], now: datetime, observed_at: datetime,
                   adopt_orphans: bool, stuck_after: float, deployment: str = "",
                   epoch: str = "") -> Repairs:
    """Compare Redis (servers), Docker (containers) and the proxy (routes); decide repairs.

    Containers and routes are observed first (at observed_at), servers after, so every
    container's server was already written; a server that became ready after observed_at
    is not judged by containers observed before it. servers: every server Redis knows,
    terminal ones included. stuck_after: seconds after which a launch or stop that should
    be over is run again (both are idempotent). deployment and epoch: ours; containers
    another deployment made are only reported, and running servers Redis forgot (made in
    an earlier epoch) are adopted whatever adopt_orphans says.
    """
    repairs = Repairs()
    routed = {server_of_route(path) for path in routes}
    ours = []
    for container in containers:
        if made_by_another(container, deployment):
            repairs.foreign[container.server_id] = (f"deployment {container.deployment}, "
                                                    f"epoch {container.epoch}")
        else:
            ours.append(container)
    running_notebooks = {c.server_id for c in ours if c.role == "notebook" and c.running}
    _repair_containers(ours, servers, repairs, adopt_orphans=adopt_orphans, epoch=epoch,
                       running_notebooks=running_notebooks)
    for server in servers.values():
        changed = server.status_changed_at or server.created_at
        if changed >= observed_at:
            continue  # changed since containers and routes were observed
        _repair_server(server, repairs, running=server.id in running_notebooks,
                       routed=server.id in routed, now=now,
                       stuck_after=stuck_after)
    for path in routes:
        server_id = server_of_route(path)
        if server_id is None or server_id in repairs.adopt or server_id in repairs.foreign:
            continue
        server = servers.get(server_id)
        if server is None:
            repairs.remove_routes[path] = "no such server"
        elif server.status.is_terminal:
            repairs.remove_routes[path] = f"its server is {server.status}"
    return repairs


def _repair_containers(containers: list[ObservedContainer], servers: dict[str, Server],
                       repairs: Repairs, *, adopt_orphans: bool, epoch: str,
                       running_notebooks: set[str]) -> None:
    """Containers of servers Redis does not know: adopted if running (a sidecar with its
    notebook), else removed; those of finished servers: removed."""
    for container in containers:
        server = servers.get(container.server_id)
        if server is not None:
            if server.status.is_terminal:
                repairs.remove_containers[container.server_id] = f"its server is {server.status}"
            continue
        adopting = adopt_orphans or forgotten(container, epoch)
        if adopting and container.server_id in running_notebooks:
            if container.role == "notebook":
                repairs.adopt.add(container.server_id)
        else:
            repairs.remove_containers[container.server_id] = "Redis does not know it"


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
