"""The connection to the Docker engine and the reading of its errors, shared by the runtime
and the builder: changes when the docker SDK's client or error model does."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests

from binderq.domain.errors import BinderqError, DependencyDown

T = TypeVar("T")

# What an operation makes of the engine refusing it (an APIError: 404, 409, 500 ...).
Refusal = Callable[[docker.errors.APIError], BinderqError]


class EngineConnection:
    """One docker client, made on first use, to the engine that DOCKER_HOST (or docker_host)
    names; `heavy()` bounds the calls that make or remove containers (EngineGate)."""

    def __init__(self, *, docker_host: str = "", timeout: float = 30.0,
                 heavy_calls: int = 0, sockets: int = 0) -> None:
        self._docker_host = docker_host
        self._timeout = timeout
        self._sockets = sockets  # as many as threads may ask at once (the launch pool's)
        self._client: docker.DockerClient | None = None
        self._made = threading.Lock()
        self._gate = engine_gate(docker_host, heavy_calls)

    @property
    def client(self) -> docker.DockerClient:
        with self._made:  # a launch worker's threads share one client and its sockets
            if self._client is None:
                self._client = connect(self._docker_host, self._timeout,
                                       sockets=self._sockets)
        return self._client

    def heavy(self) -> contextlib.AbstractContextManager[None]:
        """Hold one of the engine's heavy-call places while making or removing a server."""
        return self._gate.place()

    def ping(self, timeout: float = 1.5) -> bool:
        """Whether the engine answers, within timeout seconds (for health checks)."""
        try:
            return bool(connect(self._docker_host, timeout).ping())
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise DependencyDown("Docker engine", short(error)) from error


def engine_id(docker_host: str, timeout: float = 5.0) -> str:
    """The engine's own identity (`docker info`'s ID): one engine reached by two addresses
    has one ID. DependencyDown if it does not answer."""
    try:
        return str(connect(docker_host, timeout).info()["ID"])
    except (docker.errors.DockerException, requests.RequestException, KeyError) as error:
        raise DependencyDown("Docker engine", short(error)) from error


class EngineGate:
    """At most `calls` heavy calls to one engine at once in this process (0: no bound).

    A launch worker runs a launch per thread (docs/operations.md); thirty students clicking
    at once would otherwise send thirty network creations, container creations and starts
    to the engine together, which serialises most of them inside anyway and answers the
    liveness checks and pings of everything else late. Waiting here, a launch holds no
    engine resource; the readiness probes, which take most of a launch, are outside."""

    def __init__(self, calls: int) -> None:
        self._places: contextlib.AbstractContextManager[Any] = (
            threading.BoundedSemaphore(calls) if calls > 0 else contextlib.nullcontext())

    def place(self) -> contextlib.AbstractContextManager[Any]:
        return self._places


_gates: dict[tuple[str, int], EngineGate] = {}
_gates_made = threading.Lock()


def engine_gate(docker_host: str, calls: int) -> EngineGate:
    """The process's one gate for an engine: every runtime of a worker shares it."""
    with _gates_made:
        return _gates.setdefault((docker_host, calls), EngineGate(calls))


# Sockets kept open to an engine at least (docker's own default is 10): fewer than a burst
# of threads asking at once, and urllib3 opens extra ones and drops them with a warning.
MIN_ENGINE_SOCKETS = 10


def connect(docker_host: str, timeout: float, *, sockets: int = 0) -> docker.DockerClient:
    pool = {"max_pool_size": max(MIN_ENGINE_SOCKETS, sockets)}
    if docker_host:
        client = docker.DockerClient(base_url=docker_host, timeout=timeout, **pool)
    else:
        client = docker.from_env(timeout=timeout, **pool)
    # The engine is reached directly (its socket, or its TLS address), never through an HTTP
    # proxy the environment names; and requests' reading of the environment on every call
    # was half the CPU of an engine call in a burst of launches.
    client.api.trust_env = False
    return client


def engine_errors_as(refused: Refusal) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate an adapter method so that no docker error escapes it: a refusal the method
    did not handle becomes refused(error), an unreachable engine DependencyDown."""

    def decorate(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            try:
                return method(*args, **kwargs)
            except docker.errors.APIError as error:
                raise refused(error) from error
            except (docker.errors.DockerException, requests.RequestException) as error:
                raise DependencyDown("Docker engine", short(error)) from error

        return wrapper

    return decorate


def engine_trouble(error: docker.errors.APIError) -> BinderqError:
    """A refusal of an operation that nobody asked for in person (a listing, a removal): the
    engine is in trouble, and the task that asked is retried."""
    return DependencyDown("Docker engine", f"it refused: {short(error)}")


def ignore_gone(action: Callable[[], Any]) -> None:
    """Run a removal; 404 (gone) and 409 (removal already in progress) mean done."""
    try:
        action()
    except docker.errors.APIError as error:
        if error.status_code not in (404, 409):
            raise


def short(error: Exception) -> str:
    """The first line of an engine error's explanation, at most 300 characters."""
    text = getattr(error, "explanation", None) or str(error)
    return str(text).splitlines()[0][:300]
