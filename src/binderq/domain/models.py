"""The records binderq keeps: stagings and servers. Plain data, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

DEFAULT_PORT = 8888


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def jsonable(value: Any) -> Any:
    """A field's value as JSON holds it: times as ISO 8601 strings, statuses as strings."""
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, datetime):
        return isoformat(value)
    return value


class StagingStatus(StrEnum):
    STAGING = "staging"
    READY = "ready"
    FAILED = "failed"


class ServerStatus(StrEnum):
    # Waiting in the launch queue for room (services/launch_queue.py): it holds no capacity.
    QUEUED = "queued"
    PENDING = "pending"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (ServerStatus.STOPPED, ServerStatus.FAILED)


# A server in one of these holds (or may soon hold) a container, so it counts against capacity.
ACTIVE_SERVER_STATUSES = frozenset(
    {ServerStatus.PENDING, ServerStatus.STARTING, ServerStatus.READY, ServerStatus.STOPPING}
)


@dataclass
class Resources:
    memory: str = "512m"
    cpus: float = 1.0
    pids: int = 256


@dataclass
class ExtraService:
    """A sidecar container (a database, say) on the server's own network."""

    name: str
    image: str
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None


@dataclass
class DataVolume:
    volume: str
    target: str
    read_only: bool = True


@dataclass
class Source:
    repo: str | None = None
    commit: str | None = None


@dataclass
class Staging:
    """A named, deployable template: image, command, port, limits, services, culling."""

    name: str
    image: str | None = None
    build: str | None = None
    command: list[str] | None = None
    port: int = DEFAULT_PORT
    env: dict[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    services: list[ExtraService] = field(default_factory=list)
    data: list[DataVolume] = field(default_factory=list)
    cull_timeout: int = 600
    max_age: int = 21600
    public: bool = False
    description: str = ""
    # What the server's url points at (domain/applications.py): notebook, kernel-gateway, web.
    kind: str = "notebook"
    # How to tell a server is ready: {"http": path} or {"tcp": true}; None: the kind's own.
    probe: dict[str, Any] | None = None
    # A web app that checks no token is reachable by anyone with its url: said on purpose.
    public_url_is_secret: bool = False
    # How many servers of this staging may exist at once (pooled ones too); None: no limit.
    max_servers: int | None = None
    source: Source = field(default_factory=Source)
    status: StagingStatus = StagingStatus.STAGING
    error: str | None = None
    # Changes on every PUT that changes the template; servers remember theirs.
    version: int = 1
    # What every server of this version runs: the image's id when it was staged, whatever
    # its tag names since; the sidecars' ids by service name; the image's provenance labels.
    image_id: str | None = None
    service_image_ids: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    # With many Docker hosts: each host's pull of this version's images from the registry
    # ({host: {version, status, images, at, error}}), written by the host's first launch.
    pulls: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def template(self) -> dict[str, Any]:
        """The fields that decide what a server of this staging is (not status or times)."""
        return {
            key: value
            for key, value in to_dict(self).items()
            if key not in _STAGING_BOOKKEEPING
        }


_STAGING_BOOKKEEPING = {"status", "error", "version", "image_id", "service_image_ids",
                        "provenance", "pulls", "created_at", "updated_at"}


@dataclass
class Server:
    """A notebook server started from a staging."""

    id: str
    staging: str
    staging_version: int
    status: ServerStatus = ServerStatus.PENDING
    url: str | None = None
    pooled: bool = False
    created_at: datetime = field(default_factory=utcnow)
    ready_at: datetime | None = None
    claimed_at: datetime | None = None
    last_activity: datetime | None = None
    cull_at: datetime | None = None
    stopped_at: datetime | None = None
    status_changed_at: datetime | None = None
    error: str | None = None
    # Where the proxy sends this server's traffic, e.g. http://127.0.0.1:32768.
    target: str | None = None
    task_id: str | None = None
    # The client (domain/access.client_key) it was launched or claimed for; "" while pooled.
    client: str = ""
    # Runs of the launch task so far; a launch that keeps dying is given up (MAX_LAUNCH_...).
    launch_attempts: int = 0
    # Its staging's kind (what url points at), and the image id its containers run.
    kind: str = "notebook"
    image_id: str | None = None
    # The Docker host it runs on (domain/hosts.py), chosen when its place was reserved.
    host: str = ""


_NESTED = {
    "resources": Resources,
    "source": Source,
}
_NESTED_LISTS = {"services": ExtraService, "data": DataVolume}
_TIMES = {
    "created_at", "updated_at", "ready_at", "claimed_at", "last_activity", "cull_at", "stopped_at",
    "status_changed_at",
}


def to_dict(record: Staging | Server) -> dict[str, Any]:
    """JSON-ready dict of a record (times as ISO 8601 strings)."""
    data = asdict(record)
    for key in _TIMES & data.keys():
        data[key] = isoformat(data[key])
    for key in ("status",):
        data[key] = str(data[key])
    return data


def staging_from_dict(data: dict[str, Any]) -> Staging:
    return Staging(**_decode(Staging, data))


def server_from_dict(data: dict[str, Any]) -> Server:
    return Server(**_decode(Server, data))


def _decode(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    values = {key: value for key, value in data.items() if key in known}
    for key, nested in _NESTED.items():
        if isinstance(values.get(key), dict):
            values[key] = nested(**values[key])
    for key, nested in _NESTED_LISTS.items():
        if key in values:
            values[key] = [nested(**item) for item in values[key]]
    for key in _TIMES & values.keys():
        values[key] = parse_time(values[key])
    if "status" in values:
        status_type = StagingStatus if cls is Staging else ServerStatus
        values["status"] = status_type(values["status"])
    return values
