"""What a server's containers look like and the path it is reached at, decided from its
staging and id. Pure: no Docker here."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from binderq.domain.applications import server_command, token_env
from binderq.domain.errors import LaunchFailed
from binderq.domain.models import Staging

LABEL_SERVER = "binderq.server"
LABEL_STAGING = "binderq.staging"
LABEL_STAGING_VERSION = "binderq.staging_version"
LABEL_ROLE = "binderq.role"
LABEL_POOLED = "binderq.pooled"
LABEL_INSTANCE = "binderq.instance"
LABEL_KIND = "binderq.kind"
# Which deployment made a container (deployment_id), and in which epoch of its Redis (the
# random id Redis holds while it keeps its data): reconcile tells by these what Redis
# forgot from what another deployment owns.
LABEL_DEPLOYMENT = "binderq.deployment"
LABEL_EPOCH = "binderq.epoch"

SERVER_PATH_PREFIX = "/user/"

ROLE_NOTEBOOK = "notebook"
ROLE_SERVICE = "service"

_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([bkmg]?)$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def memory_bytes(memory: str) -> int:
    """Bytes in a Docker-style memory size ("512m", "1.5g"); ValueError if it is not one."""
    match = _MEMORY.match(memory.strip())
    if not match:
        raise ValueError(f"{memory!r} is not a memory size like 512m or 2g")
    number, unit = match.groups()
    return int(float(number) * _MEMORY_UNITS[unit.lower()])


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: list[str] | None
    env: dict[str, str]
    labels: dict[str, str]
    mem_limit: int
    nano_cpus: int
    pids_limit: int
    # Extra names other containers on the server's network know it by.
    aliases: tuple[str, ...] = ()
    # Container port published on the host, or None for sidecars.
    port: int | None = None
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    # The uid (and gid) it runs as, whatever the image's USER: never root.
    uid: int = 1000


@dataclass(frozen=True)
class ServerSpec:
    """All containers of one server, and the network they share."""

    server_id: str
    network: str
    notebook: ContainerSpec
    services: tuple[ContainerSpec, ...]
    base_url: str

    @property
    def containers(self) -> tuple[ContainerSpec, ...]:
        return (*self.services, self.notebook)


def server_path(server_id: str) -> str:
    """Where a server is reached: its notebook's base_url, its proxy route, its url's path."""
    return f"{SERVER_PATH_PREFIX}{server_id}/"


def server_of_route(path: str) -> str | None:
    """The server id a proxy route's path names (with or without the trailing slash that
    configurable-http-proxy drops); None for a route that is not a server's."""
    if not path.startswith(SERVER_PATH_PREFIX):
        return None
    return path.removeprefix(SERVER_PATH_PREFIX).strip("/")


def container_name(instance: str, server_id: str, service: str | None = None) -> str:
    """Derived from the server id, so a retried launch finds what it made before."""
    base = f"{instance}-{server_id}"
    return f"{base}-{service}" if service else base


_DEPLOYMENT_CONTEXT = b"binderq deployment v1:"


def deployment_id(secret_key: str, redis_url: str) -> str:
    """The same for every process of one deployment (one secret, one Redis), and different
    for another deployment with its own Redis, even under the same instance name on the same
    engine. Derived from where Redis is, never its password; an HMAC, so it reveals neither."""
    where = urlsplit(redis_url)
    database = parse_qs(where.query).get("db", [""])[0]  # unix sockets name it this way
    place = f"{where.scheme}://{where.hostname or ''}:{where.port or ''}{where.path}?{database}"
    digest = hmac.new(secret_key.encode(), _DEPLOYMENT_CONTEXT + place.encode(),
                      hashlib.sha256)
    return digest.hexdigest()[:16]


# The engine's map of a container's published ports: {"8888/tcp": [{"HostIp": ...,
# "HostPort": "40001"}], "9000/tcp": None}.
PortMap = dict[str, list[dict[str, str]] | None]


def published_binding(ports: PortMap, port: int | None = None) -> tuple[str, int] | None:
    """(host ip, host port) that a container publishes port on (any port when None), or
    None when it publishes none."""
    wanted = [f"{port}/tcp"] if port is not None else list(ports)
    bindings = [binding for key in wanted for binding in (ports.get(key) or [])]
    if not bindings:
        return None
    return bindings[0]["HostIp"], int(bindings[0]["HostPort"])


def render_command(
    command: list[str] | tuple[str, ...], *, base_url: str, port: int, token: str
) -> list[str]:
    """Fill {base_url}, {port} and {token}; leave every other brace alone."""
    values = {"{base_url}": base_url, "{port}": str(port), "{token}": token}
    rendered = []
    for arg in command:
        for placeholder, value in values.items():
            arg = arg.replace(placeholder, value)
        rendered.append(arg)
    return rendered


def server_spec(
    staging: Staging,
    server_id: str,
    token: str,
    *,
    instance: str,
    pooled: bool = False,
    allow_origin: str = "",
    uid: int = 1000,
    deployment: str = "",
    epoch: str = "",
) -> ServerSpec:
    """The containers and network that make one server of staging. deployment and epoch
    (when given) say who made them, and when (LABEL_DEPLOYMENT, LABEL_EPOCH)."""
    base_url = server_path(server_id)
    labels = {
        LABEL_INSTANCE: instance,
        LABEL_SERVER: server_id,
        LABEL_STAGING: staging.name,
        LABEL_STAGING_VERSION: str(staging.version),
        LABEL_POOLED: "true" if pooled else "false",
        LABEL_KIND: staging.kind,
        **({LABEL_DEPLOYMENT: deployment} if deployment else {}),
        **({LABEL_EPOCH: epoch} if epoch else {}),
    }
    notebook_limits, service_limits = split_limits(staging)
    return ServerSpec(
        server_id=server_id,
        network=container_name(instance, server_id),
        notebook=_notebook_spec(staging, server_id, token, base_url, instance, labels,
                                {**notebook_limits, "uid": uid}, allow_origin),
        services=tuple(_service_spec(svc, pinned_service_image(staging, svc.name), server_id,
                                     instance, labels, {**service_limits, "uid": uid})
                       for svc in staging.services),
        base_url=base_url,
    )


# A server's share is split by weight: the notebook counts this many, each sidecar one.
NOTEBOOK_WEIGHT = 2


def split_limits(staging: Staging) -> tuple[dict[str, int], dict[str, int]]:
    """The notebook's limits and each sidecar's: together they never exceed the staging's
    resources (memory, CPUs, pids), so sidecars are part of a server's share, not another
    share each. Without sidecars the notebook has it all; with n, each sidecar gets
    1/(n + NOTEBOOK_WEIGHT) and the notebook the rest."""
    total = {
        "mem_limit": memory_bytes(staging.resources.memory),
        "nano_cpus": int(staging.resources.cpus * 1e9),
        "pids_limit": staging.resources.pids,
    }
    sidecars = len(staging.services)
    if not sidecars:
        return total, {}
    each = {key: value // (sidecars + NOTEBOOK_WEIGHT) for key, value in total.items()}
    notebook = {key: value - sidecars * each[key] for key, value in total.items()}
    return notebook, each


def pinned_image(staging: Staging) -> str:
    """The image id a server of staging runs: the one recorded when it was staged, never
    what its tag names now (LaunchFailed if it has none: it was never staged)."""
    if not staging.image_id:
        raise LaunchFailed(f"staging {staging.name!r} has no staged image id; PUT it again "
                           "to stage it")
    return staging.image_id


def pinned_service_image(staging: Staging, service: str) -> str:
    """The image id recorded for a sidecar when its staging was staged."""
    image_id = staging.service_image_ids.get(service)
    if not image_id:
        raise LaunchFailed(f"staging {staging.name!r} has no staged image id for its service "
                           f"{service!r}; PUT it again to stage it")
    return image_id


def _notebook_spec(staging, server_id, token, base_url, instance, labels, limits, allow_origin):
    command = server_command(staging.kind, staging.command, allow_origin=allow_origin)
    env = {
        **staging.env,
        # The token never reaches Redis: it is derived again where it is needed.
        **token_env(staging.kind, token),
        "JUPYTERHUB_SERVICE_PREFIX": base_url,
        "BINDERQ_SERVER_ID": server_id,
    }
    volumes = {
        volume.volume: {"bind": volume.target, "mode": "ro" if volume.read_only else "rw"}
        for volume in staging.data
    }
    return ContainerSpec(
        name=container_name(instance, server_id),
        image=pinned_image(staging),
        command=render_command(command, base_url=base_url, port=staging.port, token=token)
        if command else None,
        env=env,
        labels={**labels, LABEL_ROLE: ROLE_NOTEBOOK},
        port=staging.port,
        volumes=volumes,
        **limits,
    )


def _service_spec(service, image, server_id, instance, labels, limits) -> ContainerSpec:
    return ContainerSpec(
        name=container_name(instance, server_id, service.name),
        image=image,
        command=list(service.command) if service.command else None,
        env=dict(service.env),
        labels={**labels, LABEL_ROLE: ROLE_SERVICE},
        aliases=(service.name,),
        **limits,
    )
