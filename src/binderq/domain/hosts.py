"""The Docker hosts binderq spreads servers over, and where a new server goes: pure rules.

BINDERQ_DOCKER_HOSTS="a=unix:///var/run/docker.sock;max=20,b=tcp://10.0.0.2:2376" names each
host, its engine and its capacity (servers at once; without `max`, the service's capacity).
Unset, there is one host, `local`, on DOCKER_HOST. The Redis reserve script
(adapters/redis_store/servers.py) mirrors pick_host; a unit test holds the two to agreeing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from binderq.domain.models import isoformat

DEFAULT_HOST = "local"
HOST_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
ENGINE_SCHEMES = ("unix://", "tcp://")
# A host's worker proves every HEARTBEAT_INTERVAL seconds that it runs and its engine answers;
# a host whose last proof is older than HEARTBEAT_TTL gets no new servers.
HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_TTL = 15
# Seconds a host may stay down before its servers are marked failed.
HOST_LOSS_GRACE = 90.0


class HostsError(ValueError):
    """BINDERQ_DOCKER_HOSTS cannot be used; the message says why."""


@dataclass(frozen=True)
class Host:
    """One Docker engine binderq runs servers on."""

    name: str
    url: str
    max_servers: int

    @property
    def queue(self) -> str:
        """The Celery queue of this host's launches, stops and container upkeep."""
        return host_queue(self.name)


def host_queue(name: str) -> str:
    return f"launches.{name}"


def parse_hosts(spec: str, *, default_url: str, default_max: int) -> tuple[Host, ...]:
    """Hosts from BINDERQ_DOCKER_HOSTS, sorted by name; one `local` host on default_url when
    spec is empty. HostsError names what is wrong."""
    if not spec.strip():
        return (Host(DEFAULT_HOST, default_url, default_max),)
    hosts = [_parse_host(item.strip(), default_max) for item in spec.split(",") if item.strip()]
    names = [host.name for host in hosts]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise HostsError(f"host {duplicates[0]!r} is named twice")
    return tuple(sorted(hosts, key=lambda host: host.name))


def _parse_host(item: str, default_max: int) -> Host:
    name, equals, rest = item.partition("=")
    url, *options = rest.split(";")
    if not equals or not HOST_NAME.match(name.strip()):
        raise HostsError(f"{item!r}: expected name=url with a name of a-z, 0-9 and -")
    if not url.startswith(ENGINE_SCHEMES) or len(url) <= len("tcp://"):
        raise HostsError(f"{item!r}: the engine's url must start with unix:// or tcp://")
    max_servers = default_max
    for option in options:
        key, _, value = option.partition("=")
        if key.strip() != "max" or not value.strip().isdigit() or int(value) < 1:
            raise HostsError(f"{item!r}: the only option is max=N (N at least 1)")
        max_servers = int(value)
    return Host(name.strip(), url.strip(), max_servers)


def pick_host(hosts: Sequence[Host], used: Mapping[str, int],
              up: set[str] | None) -> tuple[Host | None, int]:
    """The host a new server goes to: of the hosts that are up (up=None: all; with one host
    binderq does not ask), the one with the most free places, the first by name on a tie.
    Returns (host, its free places): host None when none is up; free <= 0 when all are full."""
    best, best_free = None, 0
    for host in sorted(hosts, key=lambda host: host.name):
        if up is not None and host.name not in up:
            continue
        free = host.max_servers - used.get(host.name, 0)
        if best is None or free > best_free:
            best, best_free = host, free
    return best, best_free


# Where images go in the registry: one repository, tagged by image id (the same on every
# engine after a push and a pull), so any deployment's staging of one image shares it.
REGISTRY_REPOSITORY = "binderq/images"


def registry_reference(registry: str, image_id: str) -> str:
    """The registry's name of an image id: REGISTRY/binderq/images:<hex of the id>."""
    return f"{registry}/{REGISTRY_REPOSITORY}:{image_id.removeprefix('sha256:')}"


def on_host(server_host: str, host: str, first: str) -> bool:
    """Whether a server of record server_host runs on host (records made before hosts have
    none: they run on the first host)."""
    return (server_host or first) == host


def is_lost(down_since: datetime, now: datetime, grace: float = HOST_LOSS_GRACE) -> bool:
    """A host down since down_since is lost by now: its servers are given up."""
    return (now - down_since).total_seconds() >= grace


def loss_reason(host: str, down_since: datetime) -> str:
    """Why a server of a lost host failed, naming the host."""
    return (f"host {host} is down: its engine or its launch worker has not answered since "
            f"{isoformat(down_since)}")
