"""What the services need from the outside, as protocols."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # for annotations only
    from pathlib import Path

    from binderq.domain.applications import Probe
    from binderq.domain.builds import BuildLimits
    from binderq.domain.spec import ServerSpec


class TaskQueue(Protocol):
    def enqueue(self, name: str, *args: Any, task_id: str | None = None) -> str: ...


class Proxy(Protocol):
    """The routes from a server's path to its notebook."""

    def add_route(self, path: str, target: str, **data: Any) -> None: ...
    def remove_route(self, path: str) -> None: ...
    def routes(self) -> dict[str, dict[str, Any]]: ...
    def ping(self, timeout: float | None = None) -> bool: ...


class ReadinessProbe(Protocol):
    """Wait until the server at base answers check (domain/applications.Probe)."""

    def __call__(self, base: str, token: str, *, timeout: float,
                 still_running: Callable[[], str | None], check: Probe) -> dict[str, Any]: ...


class Image(Protocol):
    """An image the engine holds."""

    @property
    def id(self) -> str: ...


class Container(Protocol):
    """One of a server's containers, as the engine reports it."""

    @property
    def server_id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def running(self) -> bool: ...
    @property
    def labels(self) -> dict[str, str]: ...
    def why_stopped(self) -> str: ...


class Runtime(Protocol):
    """The container engine, as staging, launching, stopping, pools and reconcile use it."""

    def ping(self, timeout: float = ...) -> bool: ...
    def image(self, reference: str) -> Image | None: ...
    def start_server(self, spec: ServerSpec) -> None: ...
    def published_address(self, container_name: str, port: int) -> tuple[str, int]: ...
    def container_state(self, container_name: str) -> Container | None: ...
    def logs_tail(self, container_name: str, lines: int = ...) -> str: ...
    def remove_server(self, server_id: str) -> None: ...
    def server_containers(self) -> Sequence[Container]: ...
    def adoption_facts(self, server_id: str) -> tuple[dict[str, str], str]: ...


class Builder(Protocol):
    """The image builder: docker build of a checkout with a finished Dockerfile."""

    def build_image(self, context: Path, dockerfile: str, tag: str, *,
                    expected_labels: dict[str, str], limits: BuildLimits,
                    on_line: Callable[[str], None],
                    should_stop: Callable[[], bool] = ...) -> str: ...
    def remove_image(self, tag: str) -> None: ...


class Repositories(Protocol):
    """Where builds get their code: refs resolved, one commit checked out."""

    def resolve(self, repo: str, ref: str) -> str: ...
    def fetch(self, repo: str, commit: str, dest: Path) -> Path: ...
