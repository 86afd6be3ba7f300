"""What the services need from the outside, as protocols."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class TaskQueue(Protocol):
    def enqueue(self, name: str, *args: Any, task_id: str | None = None) -> str: ...


class Proxy(Protocol):
    def add_route(self, path: str, target: str, **data: Any) -> None: ...
    def remove_route(self, path: str) -> None: ...


class ReadinessProbe(Protocol):
    def __call__(self, base: str, token: str, *, timeout: float,
                 still_running: Callable[[], str | None]) -> dict[str, Any]: ...
