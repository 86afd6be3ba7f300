"""Containers and networks of binderq servers on the Docker engine: changes when how a
server runs (limits, labels, networks, removal) does. Images are built by docker_builder."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from binderq.adapters.docker_engine import (
    EngineConnection,
    engine_errors_as,
    engine_trouble,
    ignore_gone,
    short,
)
from binderq.adapters.docker_hardening import DiskLimit, hardened_host_config
from binderq.adapters.image_registry import pull_image, push_image
from binderq.domain.errors import (
    BinderqError,
    DependencyDown,
    ImageMissing,
    LaunchFailed,
)
from binderq.domain.spec import (
    LABEL_DEPLOYMENT,
    LABEL_INSTANCE,
    LABEL_ROLE,
    LABEL_SERVER,
    ContainerSpec,
    ServerSpec,
    container_name,
    published_binding,
)

# Seconds to wait for a network's containers to be detached before removing it fails.
NETWORK_DETACH_WAIT = 10.0



@dataclass(frozen=True)
class ImageInfo:
    id: str
    labels: dict[str, str]


@dataclass(frozen=True)
class ContainerState:
    name: str
    server_id: str
    role: str
    status: str  # Docker's: created, running, exited, dead ...
    labels: dict[str, str]
    exit_code: int | None = None
    oom_killed: bool = False

    @property
    def running(self) -> bool:
        return self.status == "running"

    def why_stopped(self) -> str:
        """A person's reading of why the container is not running."""
        if self.oom_killed:
            return "it ran out of memory (raise the staging's resources.memory)"
        if self.exit_code is not None:
            return f"it exited with code {self.exit_code}"
        return f"its state is {self.status}"


def _launch_refused(error: docker.errors.APIError) -> BinderqError:
    """The engine refused a step of a launch: a 404 means that what the launch made (the
    container, its network) was removed meanwhile, by a stop or by hand."""
    if isinstance(error, docker.errors.NotFound):
        return LaunchFailed(f"the server's container vanished while starting (it or its "
                            f"network was removed meanwhile): {short(error)}")
    return LaunchFailed(f"Docker refused to start the server: {short(error)}")


class DockerRuntime:
    """Containers and networks of binderq servers on one Docker engine."""

    def __init__(self, *, instance: str, publish_ip: str = "127.0.0.1",
                 docker_host: str = "", timeout: float = 30.0, disk: str = "",
                 deployment: str = "", heavy_calls: int = 0, sockets: int = 0) -> None:
        self.instance = instance
        self.deployment = deployment  # domain/spec.deployment_id of the deployment it serves
        self.publish_ip = publish_ip
        self.disk_limit = DiskLimit(disk)  # the writable layer's size, where the engine can
        # heavy_calls: servers made or removed at once on this engine (docker_engine.EngineGate)
        self._engine = EngineConnection(docker_host=docker_host, timeout=timeout,
                                        heavy_calls=heavy_calls, sockets=sockets)

    @property
    def client(self) -> docker.DockerClient:
        return self._engine.client

    def ping(self, timeout: float = 1.5) -> bool:
        """Whether the engine answers, within timeout seconds (for health checks)."""
        return self._engine.ping(timeout)

    @engine_errors_as(engine_trouble)
    def image(self, reference: str) -> ImageInfo | None:
        """The image on the engine, or None when the engine does not have it."""
        try:
            image = self.client.images.get(reference)
        except docker.errors.ImageNotFound:
            return None
        return ImageInfo(id=image.id, labels=dict(image.labels or {}))

    def push_image(self, image_id: str, reference: str, *, host: str = "") -> None:
        """Push image id to the registry as reference (adapters/image_registry.py)."""
        push_image(self.client, image_id, reference, host=host)

    def pull_image(self, reference: str, image_id: str, *, host: str = "") -> None:
        """Pull reference, which must be image id (adapters/image_registry.py)."""
        pull_image(self.client, reference, image_id, host=host)

    @engine_errors_as(_launch_refused)
    def start_server(self, spec: ServerSpec) -> None:
        """Create (or find) and start every container of a server on its own network.

        Idempotent: a retried launch finds the network and containers it made before.
        """
        with self._engine.heavy():
            network = self._ensure_network(spec.network, spec.notebook.labels)
            for container_spec in spec.containers:
                self._start_container(container_spec, network.name)

    @engine_errors_as(_launch_refused)
    def published_address(self, container_name: str, port: int) -> tuple[str, int]:
        """(host ip, host port) that the container's port is published on."""
        container = self.client.containers.get(container_name)
        address = published_binding(container.attrs["NetworkSettings"]["Ports"] or {}, port)
        if address is None:
            raise LaunchFailed(f"container {container_name} publishes no port {port}")
        return address

    @engine_errors_as(engine_trouble)
    def adoption_facts(self, server_id: str) -> tuple[dict[str, str], str, str]:
        """Labels, proxy target and image id of a server's running notebook container."""
        try:
            container = self.client.containers.get(container_name(self.instance, server_id))
        except docker.errors.NotFound as error:
            raise LaunchFailed(f"server {server_id} has no notebook container") from error
        address = published_binding(container.attrs["NetworkSettings"]["Ports"] or {})
        if address is None:
            raise LaunchFailed(f"container {container.name} publishes no port")
        host, port = address
        return dict(container.labels), f"http://{host}:{port}", container.attrs.get("Image", "")

    @engine_errors_as(engine_trouble)
    def container_state(self, container_name: str) -> ContainerState | None:
        try:
            container = self.client.containers.get(container_name)
        except docker.errors.NotFound:
            return None
        return _state(container)

    @engine_errors_as(engine_trouble)
    def logs_tail(self, container_name: str, lines: int = 20) -> str:
        try:
            container = self.client.containers.get(container_name)
        except docker.errors.NotFound:
            return ""
        return container.logs(tail=lines).decode(errors="replace")

    @engine_errors_as(engine_trouble)
    def remove_server(self, server_id: str) -> None:
        """Remove every container and the network of a server; gone already is fine."""
        with self._engine.heavy():
            self._remove_labelled(self._server_label(server_id))

    @engine_errors_as(engine_trouble)
    def server_containers(self) -> list[ContainerState]:
        """Every notebook and service container of this binderq instance."""
        return [_listed_state(entry) for entry in self._list([self._instance_label])]

    @engine_errors_as(engine_trouble)
    def remove_instance(self) -> None:
        """Remove every container and network of this instance, whichever deployment made
        them (tests). A deployment stopping removes its own: remove_deployment."""
        self._remove_labelled([self._instance_label])

    @engine_errors_as(engine_trouble)
    def remove_deployment(self) -> None:
        """Remove the containers and networks of this instance that this deployment made
        (LABEL_DEPLOYMENT), in every epoch of its Redis; another deployment's under the same
        instance name stay (`binderq up`'s end)."""
        if not self.deployment:
            raise ValueError("this runtime was made without its deployment id")
        self._remove_labelled([self._instance_label, f"{LABEL_DEPLOYMENT}={self.deployment}"])

    @property
    def _instance_label(self) -> str:
        return f"{LABEL_INSTANCE}={self.instance}"

    def _server_label(self, server_id: str) -> list[str]:
        return [self._instance_label, f"{LABEL_SERVER}={server_id}"]

    def _list(self, labels: list[str]) -> list[dict[str, Any]]:
        # The plain list, without inspecting each container: one removed meanwhile (by a
        # concurrent stop, say) must not fail the listing with a 404.
        return self.client.api.containers(all=True, filters={"label": labels})

    def _remove_labelled(self, labels: list[str]) -> None:
        """Remove the labelled containers, then their networks; try all, raise the first."""
        removals = [lambda cid=entry["Id"]: ignore_gone(
            lambda: self.client.api.remove_container(cid, force=True, v=True))
            for entry in self._list(labels)]
        failures = _run_all(removals)
        networks = self.client.api.networks(filters={"label": labels})
        failures += _run_all([lambda n=network: self._remove_network(n["Id"], n.get("Name", ""))
                              for network in networks])
        if failures:
            raise failures[0]

    def _remove_network(self, network_id: str, name: str) -> None:
        """Remove a network once its containers are detached (a concurrent removal of them
        may still be under way: Docker answers 403, 'has active endpoints', meanwhile)."""
        deadline = time.monotonic() + NETWORK_DETACH_WAIT
        while True:
            try:
                ignore_gone(lambda: self.client.api.remove_network(network_id))
                return
            except docker.errors.APIError as error:
                if error.status_code != 403 or time.monotonic() > deadline:
                    raise DependencyDown("Docker engine", f"network {name} could not be "
                                         f"removed: {short(error)}") from error
                time.sleep(0.1)

    def _ensure_network(self, name: str, labels: dict[str, str]) -> Any:
        existing = self.client.networks.list(names=[name])
        exact = [network for network in existing if network.name == name]
        if exact:
            return exact[0]
        network_labels = {k: v for k, v in labels.items() if k != LABEL_ROLE}
        try:
            return self.client.networks.create(name, driver="bridge", labels=network_labels,
                                               check_duplicate=True)
        except docker.errors.APIError as error:
            if error.status_code == 409:  # a concurrent retry made it first
                return self.client.networks.get(name)
            if "address pool" in short(error) or "non-overlapping" in short(error):
                raise LaunchFailed(
                    "the Docker engine has no address range left for another server network; "
                    "start dockerd with a larger --default-address-pool (see "
                    "docs/operations.md)") from error
            raise LaunchFailed(f"Docker could not create network {name}: "
                               f"{short(error)}") from error

    def _start_container(self, spec: ContainerSpec, network: str) -> None:
        """Create the container and start it; one made by an earlier run of the launch (a
        409 on its name) is started unless it runs. Create first, rather than look first:
        in a burst every round trip to the engine waits behind the others'."""
        try:
            created = self._create(spec, network)
        except docker.errors.ImageNotFound as error:
            raise ImageMissing(f"image {spec.image!r} is not on the Docker engine",
                               image=spec.image) from error
        except docker.errors.APIError as error:
            if error.status_code != 409:
                raise LaunchFailed(f"Docker refused container {spec.name}: "
                                   f"{short(error)}") from error
            existing = self.client.containers.get(spec.name)  # made by an earlier run
            if existing.status != "running":
                existing.start()
            return
        self.client.api.start(created)

    def _create(self, spec: ContainerSpec, network: str) -> str:
        try:
            return self._create_hardened(spec, network, self.disk_limit.applies(self.client))
        except docker.errors.APIError as error:
            if not self.disk_limit.refused(error):
                raise
            return self._create_hardened(spec, network, "")

    def _create_hardened(self, spec: ContainerSpec, network: str, disk: str) -> str:
        ports = {f"{spec.port}/tcp": (self.publish_ip, None)} if spec.port else {}
        endpoint = self.client.api.create_endpoint_config(aliases=list(spec.aliases) or None)
        networking = self.client.api.create_networking_config({network: endpoint})
        hardening = hardened_host_config(self.client.api, spec, network=network, ports=ports,
                                         disk=disk)
        created = self.client.api.create_container(
            image=spec.image,
            command=spec.command,
            name=spec.name,
            labels=spec.labels,
            ports=list(ports) or None,
            networking_config=networking,
            detach=True,
            **hardening,
        )
        return created["Id"]


def _state(container: Any) -> ContainerState:
    labels = dict(container.labels or {})
    state = container.attrs.get("State") or {}
    return ContainerState(
        name=container.name,
        server_id=labels.get(LABEL_SERVER, ""),
        role=labels.get(LABEL_ROLE, ""),
        status=container.status,
        labels=labels,
        exit_code=state.get("ExitCode") if container.status != "running" else None,
        oom_killed=bool(state.get("OOMKilled")),
    )


def _run_all(actions: list[Callable[[], Any]]) -> list[DependencyDown]:
    """Run every action; the failures, as ours."""
    failures = []
    for action in actions:
        try:
            action()
        except DependencyDown as error:
            failures.append(error)
        except docker.errors.DockerException as error:
            failures.append(DependencyDown("Docker engine", short(error)))
    return failures


def _listed_state(entry: dict[str, Any]) -> ContainerState:
    """A ContainerState from the engine's container list (no exit code or OOM flag there)."""
    labels = dict(entry.get("Labels") or {})
    names = entry.get("Names") or [""]
    return ContainerState(
        name=names[0].lstrip("/"),
        server_id=labels.get(LABEL_SERVER, ""),
        role=labels.get(LABEL_ROLE, ""),
        status=entry.get("State", ""),
        labels=labels,
    )
