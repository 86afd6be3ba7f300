"""In-memory stand-ins for the adapters, for fast unit tests of the logic only.

Every adapter also has tests against the real service under tests/integration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binderq.adapters.docker_runtime import ContainerState, ImageInfo
from binderq.domain.builds import BuildLimits
from binderq.domain.collect import BuiltImage
from binderq.domain.errors import (
    BuildFailed,
    DependencyDown,
    ImageMissing,
    ImageTransferFailed,
    LaunchFailed,
)
from binderq.domain.spec import ServerSpec


@dataclass
class FakeQueue:
    sent: list[tuple[str, tuple[Any, ...], str]] = field(default_factory=list)
    down: bool = False
    # The host each task was sent to, by task id (None: as the task table routes it).
    hosts: dict[str, str | None] = field(default_factory=dict)

    def enqueue(self, name: str, *args: Any, task_id: str | None = None,
                host: str | None = None) -> str:
        if self.down:
            raise DependencyDown("Redis", "could not queue")
        task_id = task_id or f"task-{len(self.sent)}"
        self.sent.append((name, args, task_id))
        self.hosts[task_id] = host
        return task_id

    def names(self) -> list[str]:
        return [name for name, _, _ in self.sent]

    def task(self, task_id: str) -> dict[str, Any] | None:
        for name, _, sent_id in self.sent:
            if sent_id == task_id:
                return {"id": task_id, "name": name, "state": "PENDING", "result": None,
                        "error": None}
        return None

    def ping_worker(self, queue: str, timeout: float) -> dict[str, Any]:
        if self.down:
            raise DependencyDown("workers", "no worker answered")
        return {"docker": {"ok": True}}


@dataclass
class FakeRuntime:
    images: dict[str, str] = field(default_factory=lambda: {"binderq/notebook:bookworm": "sha"})
    containers: dict[str, ContainerState] = field(default_factory=dict)
    started: list[ServerSpec] = field(default_factory=list)
    down: bool = False
    fail_start: str | None = None
    next_port: int = 40000

    def _check(self) -> None:
        if self.down:
            raise DependencyDown("Docker engine", "connection refused")

    def ping(self, timeout: float = 1.5) -> bool:
        self._check()
        return True

    # Labels of images, by id (provenance, say); none by default.
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def image(self, reference: str) -> ImageInfo | None:
        """By tag or by id, as the engine finds it."""
        self._check()
        image_id = self.images.get(reference) or (
            reference if reference in self.images.values() else None)
        return ImageInfo(image_id, dict(self.labels.get(image_id, {}))) if image_id else None

    def start_server(self, spec: ServerSpec) -> None:
        self._check()
        if self.fail_start:
            raise LaunchFailed(self.fail_start)
        for container in spec.containers:
            if self.image(container.image) is None:
                raise ImageMissing(f"image {container.image!r} is not on the Docker engine",
                                   image=container.image)
        self.started.append(spec)
        for container in spec.containers:
            self.containers.setdefault(container.name, ContainerState(
                container.name, spec.server_id, container.labels["binderq.role"], "running",
                dict(container.labels)))

    def published_address(self, name: str, port: int) -> tuple[str, int]:
        self._check()
        self.next_port += 1
        return "127.0.0.1", self.next_port

    def container_state(self, name: str) -> ContainerState | None:
        self._check()
        return self.containers.get(name)

    def logs_tail(self, name: str, lines: int = 20) -> str:
        return "fake log line"

    def remove_server(self, server_id: str) -> None:
        self._check()
        for name in [n for n, c in self.containers.items() if c.server_id == server_id]:
            del self.containers[name]

    def server_containers(self) -> list[ContainerState]:
        self._check()
        return list(self.containers.values())

    # A registry this engine pushes to and pulls from (share one dict between two fakes).
    registry: dict[str, str] = field(default_factory=dict)
    pulled: list[str] = field(default_factory=list)

    def push_image(self, image_id: str, reference: str, *, host: str = "") -> None:
        self._check()
        if image_id not in self.images.values():
            raise ImageTransferFailed(f"host {host} has no image {image_id}", host=host,
                                      image=image_id)
        self.registry[reference] = image_id

    def pull_image(self, reference: str, image_id: str, *, host: str = "") -> None:
        self._check()
        if self.registry.get(reference) != image_id:
            raise ImageTransferFailed(f"host {host} could not pull image {image_id} from "
                                      f"{reference}: not found", host=host, image=image_id)
        self.images[reference] = image_id
        self.pulled.append(reference)

    def adoption_facts(self, server_id: str) -> tuple[dict[str, str], str, str]:
        self._check()
        (container,) = [c for c in self.containers.values()
                        if c.server_id == server_id and c.role == "notebook"]
        image_id = next((spec.notebook.image for spec in self.started
                         if spec.server_id == server_id), "")
        return container.labels, "http://127.0.0.1:45678", image_id


@dataclass
class FakeBuilder:
    """Builds a Dockerfile one line a step, logging "Step n/m : line". A step `RUN false`
    fails as docker's does; a Dockerfile whose last line is not a LABEL fails as an image
    without its provenance labels does. during_step runs after each step is logged (to
    cancel a build meanwhile, say)."""

    images: dict[str, dict[str, str]] = field(default_factory=dict)  # tag -> labels
    dockerfiles: list[str] = field(default_factory=list)
    during_step: Callable[[], None] = lambda: None
    image_ids: dict[str, str] = field(default_factory=dict)  # tag -> id
    untagged: list[BuiltImage] = field(default_factory=list)  # built images without a tag
    used_by_containers: set[str] = field(default_factory=set)  # refused removals
    removed: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)  # registry references
    # Lines each step prints after its "Step n/m" line.
    step_output: list[str] = field(default_factory=list)

    def build_image(self, context: Path, dockerfile: str, tag: str, *,
                    expected_labels: dict[str, str], limits: BuildLimits,
                    on_line: Callable[[str], None],
                    should_stop: Callable[[], bool] = lambda: False) -> str:
        self.dockerfiles.append(dockerfile)
        steps = dockerfile.strip().splitlines()
        for number, step in enumerate(steps, 1):
            on_line(f"Step {number}/{len(steps)} : {step}")
            for line in self.step_output:
                on_line(line)
            self.during_step()
            if should_stop():
                raise BuildFailed("the build was stopped")
            if step == "RUN false":
                raise BuildFailed("The command '/bin/sh -c false' returned a non-zero code: 1")
        if not steps[-1].startswith("LABEL "):
            raise BuildFailed("the image lacks its provenance labels")
        self.images[tag] = dict(expected_labels)
        self.image_ids[tag] = "sha256:" + hashlib.sha256(dockerfile.encode()).hexdigest()
        return self.image_ids[tag]

    def push_image(self, image_id: str, reference: str, *, host: str = "") -> None:
        self.pushed.append(reference)

    def remove_image(self, tag: str) -> None:
        self.images.pop(tag, None)

    def built_images(self, instance: str) -> list[BuiltImage]:
        tagged = [BuiltImage(self.image_ids[tag], (tag,), labels["binderq.build.id"])
                  for tag, labels in self.images.items()
                  if labels.get("binderq.instance") == instance]
        return tagged + list(self.untagged)

    def remove_unused_image(self, reference: str) -> bool:
        if reference in self.used_by_containers:
            return False
        self.removed.append(reference)
        self.untagged = [image for image in self.untagged if image.id != reference]
        self.images.pop(reference, None)
        return True


@dataclass
class FakeGit:
    """Resolves every ref to a commit named after the repository and ref; a fetch writes
    files (path -> content) as the checkout."""

    files: dict[str, bytes] = field(default_factory=dict)
    fetched: list[tuple[str, str]] = field(default_factory=list)

    def resolve(self, repo: str, ref: str) -> str:
        return hashlib.sha1(f"{repo}@{ref}".encode()).hexdigest()

    def fetch(self, repo: str, commit: str, dest: Path) -> Path:
        self.fetched.append((repo, commit))
        for path, content in self.files.items():
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            (dest / path).write_bytes(content)
        dest.mkdir(parents=True, exist_ok=True)
        return dest


@dataclass
class FakeProxy:
    routes_: dict[str, dict[str, Any]] = field(default_factory=dict)
    down: bool = False

    def _check(self) -> None:
        if self.down:
            raise DependencyDown("proxy", "connection refused")

    def add_route(self, path: str, target: str, **data: Any) -> None:
        self._check()
        self.routes_[_chp_path(path)] = {"target": target, **data}

    def remove_route(self, path: str) -> None:
        self._check()
        self.routes_.pop(_chp_path(path), None)

    def routes(self) -> dict[str, dict[str, Any]]:
        self._check()
        return dict(self.routes_)

    def ping(self, timeout: float | None = None) -> bool:
        self._check()
        return True


def _chp_path(path: str) -> str:
    """configurable-http-proxy keeps /user/abc/ as /user/abc."""
    return path.rstrip("/") or "/"


def answering_probe(base: str, token: str, *, timeout: float, still_running: Any,
                    check: Any = None) -> dict:
    return {"last_activity": "2026-01-01T00:00:00Z"}


def silent_probe(base: str, token: str, *, timeout: float, still_running: Any,
                 check: Any = None) -> dict:
    raise LaunchFailed(f"the notebook did not answer within {timeout:g} s")
