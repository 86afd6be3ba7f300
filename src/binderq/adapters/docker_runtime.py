"""The Docker engine, through the docker SDK: the only module that imports docker."""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests

from binderq.domain.builds import with_labels
from binderq.domain.errors import DependencyDown, LaunchFailed
from binderq.domain.spec import (
    LABEL_INSTANCE,
    LABEL_ROLE,
    LABEL_SERVER,
    ContainerSpec,
    ServerSpec,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

# Capabilities no notebook needs; the rest of Docker's default set stays, because images
# built from users' Dockerfiles may start as root and chown their home, as docker-stacks do.
# The classic builder names each step's image: " ---> 1a2b3c4d5e6f".
_STEP_IMAGE = re.compile(r"^ ---> ([0-9a-f]{12})$")

# ... and its step's container: " ---> Running in 1a2b3c4d5e6f".
_STEP_CONTAINER = re.compile(r"^ ---> Running in ([0-9a-f]{12})$")

# Seconds between asking whether a running build should stop.
STOP_CHECK_EVERY = 1.0

# Seconds a failed build waits for dockerd to let go of the images it made.
HALF_IMAGE_WAIT = 15.0

# Seconds to wait for a network's containers to be detached before removing it fails.
NETWORK_DETACH_WAIT = 10.0

_DROPPED_CAPABILITIES = ["NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP", "SYS_CHROOT"]


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


def _engine_errors_as_ours(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return method(*args, **kwargs)
        except docker.errors.APIError:
            raise
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise DependencyDown("Docker engine", _short(error)) from error

    return wrapper


class DockerRuntime:
    """Containers, networks and images of binderq servers on one Docker engine."""

    def __init__(self, *, instance: str, publish_ip: str = "127.0.0.1",
                 docker_host: str = "", timeout: float = 30.0) -> None:
        self.instance = instance
        self.publish_ip = publish_ip
        self._docker_host = docker_host
        self._timeout = timeout
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = _connect(self._docker_host, self._timeout)
        return self._client

    @_engine_errors_as_ours
    def ping(self, timeout: float = 1.5) -> bool:
        """Whether the engine answers, within timeout seconds (for health checks)."""
        return bool(_connect(self._docker_host, timeout).ping())

    @_engine_errors_as_ours
    def image(self, reference: str) -> ImageInfo | None:
        """The image on the engine, or None when the engine does not have it."""
        try:
            image = self.client.images.get(reference)
        except docker.errors.ImageNotFound:
            return None
        return ImageInfo(id=image.id, labels=dict(image.labels or {}))

    @_engine_errors_as_ours
    def start_server(self, spec: ServerSpec) -> None:
        """Create (or find) and start every container of a server on its own network.

        Idempotent: a retried launch finds the network and containers it made before.
        """
        network = self._ensure_network(spec.network, spec.notebook.labels)
        for container_spec in spec.containers:
            container = self._find_or_create(container_spec, network.name)
            if container.status != "running":
                container.start()

    @_engine_errors_as_ours
    def published_address(self, container_name: str, port: int) -> tuple[str, int]:
        """(host ip, host port) that the container's port is published on."""
        container = self.client.containers.get(container_name)
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []
        if not bindings:
            raise LaunchFailed(f"container {container_name} publishes no port {port}")
        return bindings[0]["HostIp"], int(bindings[0]["HostPort"])

    @_engine_errors_as_ours
    def build_image(self, context: Path, dockerfile: str, tag: str, *, labels: dict[str, str],
                    memory: int, cpu_shares: int, timeout: float,
                    on_line: Callable[[str], None],
                    should_stop: Callable[[], bool] = lambda: False) -> str:
        """docker build of context with dockerfile (its text); on_line gets each log line.
        should_stop is asked every STOP_CHECK_EVERY seconds: once it says yes, the step
        running then is killed, silent or not, and the build ends. A build that talks past
        timeout seconds is stopped (a silent one is stopped by the task's time limit).
        Returns the image id; LaunchFailed on failure, and no half-image is left."""
        (context / ".binderq.Dockerfile").write_text(with_labels(dockerfile, labels))
        made: list[str] = []  # images of the steps, to remove if the build fails
        deadline = time.monotonic() + timeout
        watch = _StopWatch(should_stop, self._kill_step)
        stream = self._start_build(
            path=str(context), dockerfile=".binderq.Dockerfile", tag=tag,
            rm=True, forcerm=True, decode=True, pull=False,
            container_limits={"memory": memory, "memswap": memory, "cpushares": cpu_shares})
        watch.start()
        try:
            for chunk in stream:
                if watch.stopped:
                    raise LaunchFailed("the build was stopped")
                if "error" in chunk:
                    raise LaunchFailed(_step_error(str(chunk["error"]).strip(), memory))
                if time.monotonic() > deadline:
                    raise LaunchFailed(f"the build exceeded its time limit of {timeout:g} s")
                text = chunk.get("stream") or chunk.get("status") or ""
                for line in text.splitlines():
                    made += _STEP_IMAGE.findall(line)
                    watch.step_container(_STEP_CONTAINER.findall(line))
                    if line.strip():
                        on_line(line)
            if watch.stopped:
                raise LaunchFailed("the build was stopped")
        except (docker.errors.APIError, docker.errors.BuildError,
                docker.errors.InvalidRepository) as error:
            watch.finish()
            self._abandon(stream, made)
            raise LaunchFailed(_short(error)) from error
        except BaseException:  # stopped, cancelled, timed out: no half-image stays
            watch.finish()
            self._abandon(stream, made)
            raise
        watch.finish()
        stream.close()
        image = self.client.images.get(tag)
        if any(image.labels.get(key) != value for key, value in labels.items()):
            self.remove_image(tag)  # its LABEL step never ran: no image without provenance
            raise LaunchFailed("the image lacks its provenance labels: does the Dockerfile's "
                               "last line end with a line continuation?")
        return image.id

    def _kill_step(self, container_id: str) -> None:
        """Kill a build step's container; the classic builder then fails that step."""
        try:
            self.client.api.kill(container_id)
        except docker.errors.APIError as error:  # it ended meanwhile, or is gone
            log.info("build step %s was not killed: %s", container_id, _short(error))

    def _abandon(self, stream: Any, image_ids: list[str]) -> None:
        """Stop a build (closing its connection makes dockerd cancel it and remove its step
        container), then remove the untagged images it made. Tagged ones (the base image)
        and ones other images stand on stay."""
        stream.close()
        self.client.api.close()
        deadline = time.monotonic() + HALF_IMAGE_WAIT
        for image_id in reversed(image_ids):
            while True:
                try:
                    if self.client.images.get(image_id).tags:
                        break
                    self.client.api.remove_image(image_id)
                    break
                except docker.errors.NotFound:
                    break
                except docker.errors.APIError as error:
                    # 409 while the cancelled step's container still uses the image
                    if error.status_code != 409 or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)

    def _start_build(self, **arguments: Any) -> Any:
        try:
            return self.client.api.build(**arguments)
        except (docker.errors.APIError, docker.errors.DockerException) as error:
            if isinstance(error, docker.errors.APIError) or "reference" in str(error):
                raise LaunchFailed(f"docker refused the build: {_short(error)}") from error
            raise

    @_engine_errors_as_ours
    def remove_image(self, tag: str) -> None:
        _ignore_gone(lambda: self.client.api.remove_image(tag, force=True))

    @_engine_errors_as_ours
    def adoption_facts(self, server_id: str) -> tuple[dict[str, str], str]:
        """Labels and proxy target of a server's running notebook container."""
        try:
            container = self.client.containers.get(f"{self.instance}-{server_id}")
        except docker.errors.NotFound as error:
            raise LaunchFailed(f"server {server_id} has no notebook container") from error
        ports = container.attrs["NetworkSettings"]["Ports"] or {}
        bindings = [binding for found in ports.values() for binding in (found or [])]
        if not bindings:
            raise LaunchFailed(f"container {container.name} publishes no port")
        return dict(container.labels), f"http://{bindings[0]['HostIp']}:{bindings[0]['HostPort']}"

    @_engine_errors_as_ours
    def container_state(self, container_name: str) -> ContainerState | None:
        try:
            container = self.client.containers.get(container_name)
        except docker.errors.NotFound:
            return None
        return _state(container)

    @_engine_errors_as_ours
    def logs_tail(self, container_name: str, lines: int = 20) -> str:
        try:
            container = self.client.containers.get(container_name)
        except docker.errors.NotFound:
            return ""
        return container.logs(tail=lines).decode(errors="replace")

    @_engine_errors_as_ours
    def remove_server(self, server_id: str) -> None:
        """Remove every container and the network of a server; gone already is fine."""
        self._remove_labelled(self._server_label(server_id))

    @_engine_errors_as_ours
    def server_containers(self) -> list[ContainerState]:
        """Every notebook and service container of this binderq instance."""
        return [_listed_state(entry) for entry in self._list([self._instance_label])]

    @_engine_errors_as_ours
    def remove_instance(self) -> None:
        """Remove every container and network of this instance (tests, `binderq up`'s end)."""
        self._remove_labelled([self._instance_label])

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
        removals = [lambda cid=entry["Id"]: _ignore_gone(
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
                _ignore_gone(lambda: self.client.api.remove_network(network_id))
                return
            except docker.errors.APIError as error:
                if error.status_code != 403 or time.monotonic() > deadline:
                    raise DependencyDown("Docker engine", f"network {name} could not be "
                                         f"removed: {_short(error)}") from error
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
            if "address pool" in _short(error) or "non-overlapping" in _short(error):
                raise LaunchFailed(
                    "the Docker engine has no address range left for another server network; "
                    "start dockerd with a larger --default-address-pool (see "
                    "docs/operations.md)") from error
            raise LaunchFailed(f"Docker could not create network {name}: "
                               f"{_short(error)}") from error

    def _find_or_create(self, spec: ContainerSpec, network: str) -> Any:
        try:
            return self.client.containers.get(spec.name)
        except docker.errors.NotFound:
            pass
        try:
            return self._create(spec, network)
        except docker.errors.ImageNotFound as error:
            raise LaunchFailed(f"image {spec.image!r} is not on the Docker engine") from error
        except docker.errors.APIError as error:
            if error.status_code == 409:  # a concurrent retry created it first
                return self.client.containers.get(spec.name)
            raise LaunchFailed(f"Docker refused container {spec.name}: {_short(error)}") from error

    def _create(self, spec: ContainerSpec, network: str) -> Any:
        ports = {f"{spec.port}/tcp": (self.publish_ip, None)} if spec.port else {}
        endpoint = self.client.api.create_endpoint_config(aliases=list(spec.aliases) or None)
        networking = self.client.api.create_networking_config({network: endpoint})
        host_config = self.client.api.create_host_config(
            mem_limit=spec.mem_limit,
            memswap_limit=spec.mem_limit,
            nano_cpus=spec.nano_cpus,
            pids_limit=spec.pids_limit,
            port_bindings=ports,
            binds=spec.volumes or None,
            network_mode=network,
            cap_drop=_DROPPED_CAPABILITIES,
            security_opt=["no-new-privileges"],
            init=True,
        )
        created = self.client.api.create_container(
            image=spec.image,
            command=spec.command,
            name=spec.name,
            environment=spec.env,
            labels=spec.labels,
            ports=list(ports) or None,
            host_config=host_config,
            networking_config=networking,
            detach=True,
        )
        return self.client.containers.get(created["Id"])


def _connect(docker_host: str, timeout: float) -> docker.DockerClient:
    if docker_host:
        return docker.DockerClient(base_url=docker_host, timeout=timeout)
    return docker.from_env(timeout=timeout)


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
            failures.append(DependencyDown("Docker engine", _short(error)))
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


def _ignore_gone(action: Callable[[], Any]) -> None:
    """Run a removal; 404 (gone) and 409 (removal already in progress) mean done."""
    try:
        action()
    except docker.errors.APIError as error:
        if error.status_code not in (404, 409):
            raise


def _step_error(message: str, memory: int) -> str:
    """The builder's error, saying so when a step was killed: a SIGKILL we did not send is
    the kernel's, for the build's memory limit."""
    if message.endswith("returned a non-zero code: 137"):
        return (f"{message} (killed: it ran out of the build's memory limit of "
                f"{memory // 1024**2} MiB, BINDERQ_BUILD_MEMORY)")
    return message


class _StopWatch:
    """While a build runs, asks should_stop every STOP_CHECK_EVERY seconds; once it says
    yes, kills the step container running then (or the next one to start), so that a silent
    step stops too."""

    def __init__(self, should_stop: Callable[[], bool], kill: Callable[[str], None]) -> None:
        self._should_stop = should_stop
        self._kill = kill
        self._container: str | None = None
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="build-stop", daemon=True)
        self.stopped = False

    def start(self) -> None:
        self._thread.start()

    def step_container(self, found: list[str]) -> None:
        """The builder said which container runs the current step."""
        if found:
            self._container = found[-1]
            if self.stopped:
                self._kill(found[-1])

    def finish(self) -> None:
        self._finished.set()
        self._thread.join(timeout=2 * STOP_CHECK_EVERY)

    def _watch(self) -> None:
        while not self._finished.wait(STOP_CHECK_EVERY):
            try:
                self.stopped = self.stopped or bool(self._should_stop())
            except Exception:  # noqa: BLE001  (Redis away a moment: ask again next time)
                log.warning("could not learn whether a build should stop", exc_info=True)
                continue
            if self.stopped and self._container:
                self._kill(self._container)
                return


def _short(error: Exception) -> str:
    text = getattr(error, "explanation", None) or str(error)
    return str(text).splitlines()[0][:300]
