"""The connection to the Docker engine and the reading of its errors, shared by the runtime
and the builder: changes when the docker SDK's client or error model does."""

from __future__ import annotations

import functools
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
    names."""

    def __init__(self, *, docker_host: str = "", timeout: float = 30.0) -> None:
        self._docker_host = docker_host
        self._timeout = timeout
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect(self._docker_host, self._timeout)
        return self._client

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


def connect(docker_host: str, timeout: float) -> docker.DockerClient:
    if docker_host:
        return docker.DockerClient(base_url=docker_host, timeout=timeout)
    return docker.from_env(timeout=timeout)


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
