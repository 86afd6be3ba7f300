"""Images built with `docker build` on the Docker engine: changes when how binderq builds an
image (limits, stopping, cleaning up after a failure) does."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors

from binderq.adapters.build_cgroup import BuildPids
from binderq.adapters.docker_engine import (
    EngineConnection,
    engine_errors_as,
    engine_trouble,
    ignore_gone,
    short,
)
from binderq.adapters.image_registry import push_image
from binderq.domain.builds import PROVENANCE_PREFIX, BuildLimits
from binderq.domain.collect import BuiltImage
from binderq.domain.errors import BinderqError, BuildFailed

log = logging.getLogger(__name__)

# The classic builder names each step's image: " ---> 1a2b3c4d5e6f".
_STEP_IMAGE = re.compile(r"^ ---> ([0-9a-f]{12})$")

# ... and its step's container: " ---> Running in 1a2b3c4d5e6f".
_STEP_CONTAINER = re.compile(r"^ ---> Running in ([0-9a-f]{12})$")

_STEP_MARK = " ---> "  # how both begin

# Seconds between asking whether a running build should stop.
STOP_CHECK_EVERY = 1.0

# Seconds a failed build waits for dockerd to let go of the images it made.
HALF_IMAGE_WAIT = 15.0

DOCKERFILE = ".binderq.Dockerfile"  # written into the build context


def _build_refused(error: docker.errors.DockerException) -> BinderqError:
    return BuildFailed(f"docker refused the build: {short(error)}")


class DockerBuilder:
    """Builds images from a context folder and a finished Dockerfile, on one Docker engine."""

    def __init__(self, *, docker_host: str = "", timeout: float = 30.0,
                 pids_limit: int = 1024) -> None:
        self._engine = EngineConnection(docker_host=docker_host, timeout=timeout)
        self._pids = BuildPids(pids_limit, docker_host)  # how many processes a step may run

    @property
    def client(self) -> docker.DockerClient:
        return self._engine.client

    @engine_errors_as(_build_refused)
    def build_image(self, context: Path, dockerfile: str, tag: str, *,
                    expected_labels: dict[str, str], limits: BuildLimits,
                    on_line: Callable[[str], None],
                    should_stop: Callable[[], bool] = lambda: False) -> str:
        """docker build of context with dockerfile (its text, provenance LABEL included);
        on_line gets each log line. should_stop is asked every STOP_CHECK_EVERY seconds: once
        it says yes, the step running then is killed, silent or not, and the build ends. A
        build that talks past its time limit is stopped (a silent one is stopped by the
        task's time limit). The image must carry expected_labels. Returns the image id;
        BuildFailed on failure, and no half-image is left."""
        (context / DOCKERFILE).write_text(dockerfile)
        with self._pids.parent(self.client, lifetime=limits.timeout) as cgroup_parent:
            return self._build(context, tag, expected_labels, limits, on_line, should_stop,
                               cgroup_parent)

    def _build(self, context: Path, tag: str, expected_labels: dict[str, str],
               limits: BuildLimits, on_line: Callable[[str], None],
               should_stop: Callable[[], bool], cgroup_parent: str | None) -> str:
        made: list[str] = []  # images of the steps, to remove if the build fails
        watch = _StopWatch(should_stop, self._kill_step)
        stream = self._start_build(context, tag, limits, cgroup_parent)
        watch.start()
        try:
            for line in _log_lines(stream, watch, limits):
                if line.startswith(_STEP_MARK):  # cheap: a loud step prints millions of lines
                    made += _STEP_IMAGE.findall(line)
                    watch.step_container(_STEP_CONTAINER.findall(line))
                on_line(line)
        except (docker.errors.APIError, docker.errors.BuildError,
                docker.errors.InvalidRepository) as error:
            self._abandon(watch, stream, made)
            raise BuildFailed(short(error)) from error
        except BaseException:  # stopped, cancelled, timed out: no half-image stays
            self._abandon(watch, stream, made)
            raise
        watch.finish()
        stream.close()
        return self._check_labels(tag, expected_labels)

    @engine_errors_as(_build_refused)
    def push_image(self, image_id: str, reference: str, *, host: str = "") -> None:
        """Push a built image to the registry (adapters/image_registry.py)."""
        push_image(self.client, image_id, reference, host=host)

    def remove_image(self, tag: str) -> None:
        """Remove a built image; gone already is fine."""
        ignore_gone(lambda: self.client.api.remove_image(tag, force=True))

    @engine_errors_as(engine_trouble)
    def built_images(self, instance: str) -> list[BuiltImage]:
        """The images builds of instance made (by their labels), tagged or not."""
        build_id = f"{PROVENANCE_PREFIX}id"
        found = self.client.images.list(
            filters={"label": [f"binderq.instance={instance}", build_id]})
        return [BuiltImage(image.id, tuple(image.tags), image.labels[build_id])
                for image in found]

    @engine_errors_as(engine_trouble)
    def remove_unused_image(self, reference: str) -> bool:
        """Remove an image, or only the tag reference when the image has others, never by
        force: False (and it stays) while a container uses it, or when it is gone."""
        try:
            self.client.images.remove(reference)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as error:
            if error.status_code != 409:  # 409: a container (or a child image) uses it
                raise
            log.info("image %s stays: %s", reference, short(error))
            return False
        return True

    def _check_labels(self, tag: str, expected: dict[str, str]) -> str:
        image = self.client.images.get(tag)
        if any(image.labels.get(key) != value for key, value in expected.items()):
            self.remove_image(tag)  # its LABEL step never ran: no image without provenance
            raise BuildFailed("the image lacks its provenance labels: does the Dockerfile's "
                              "last line end with a line continuation?")
        return image.id

    def _start_build(self, context: Path, tag: str, limits: BuildLimits,
                     cgroup_parent: str | None) -> Any:
        container_limits = {"memory": limits.memory, "memswap": limits.memory,
                            "cpushares": limits.cpu_shares}
        try:
            if cgroup_parent:  # docker-py's build cannot pass it: the same request, by hand
                return _post_build(self.client.api, context, {
                    "t": tag, "dockerfile": DOCKERFILE, "rm": True, "forcerm": True,
                    "pull": False, "cgroupparent": cgroup_parent, **container_limits})
            return self.client.api.build(
                path=str(context), dockerfile=DOCKERFILE, tag=tag, rm=True, forcerm=True,
                decode=True, pull=False, container_limits=container_limits)
        except docker.errors.DockerException as error:
            # A tag docker-py itself refuses is the build's fault, not the engine's (the
            # engine's refusals, APIError, the decorator turns into BuildFailed).
            if "reference" in str(error) and not isinstance(error, docker.errors.APIError):
                raise _build_refused(error) from error
            raise

    def _kill_step(self, container_id: str) -> None:
        """Kill a build step's container; the classic builder then fails that step."""
        try:
            self.client.api.kill(container_id)
        except docker.errors.APIError as error:  # it ended meanwhile, or is gone
            log.info("build step %s was not killed: %s", container_id, short(error))

    def _abandon(self, watch: _StopWatch, stream: Any, image_ids: list[str]) -> None:
        """Stop a build (closing its connection makes dockerd cancel it and remove its step
        container), then remove the untagged images it made. Tagged ones (the base image)
        and ones other images stand on stay."""
        watch.finish()
        stream.close()
        self.client.api.close()
        deadline = time.monotonic() + HALF_IMAGE_WAIT
        for image_id in reversed(image_ids):
            self._remove_half_image(image_id, deadline)

    def _remove_half_image(self, image_id: str, deadline: float) -> None:
        while True:
            try:
                if not self.client.images.get(image_id).tags:
                    self.client.api.remove_image(image_id)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as error:
                # 409 while the cancelled step's container still uses the image
                if error.status_code != 409 or time.monotonic() > deadline:
                    return
                time.sleep(0.2)


def _post_build(api: docker.APIClient, context: Path, params: dict[str, Any]) -> Any:
    """POST /build as docker-py's api.build does, with the engine's `cgroupparent`, which
    docker-py does not pass: the stream of decoded log chunks."""
    ignore = context / ".dockerignore"
    exclude = None
    if ignore.exists():
        exclude = [line.strip() for line in ignore.read_text().splitlines()
                   if line.strip() and not line.strip().startswith("#")]
    archive = docker.utils.tar(str(context), exclude=exclude, dockerfile=(DOCKERFILE, None))
    headers = {"Content-Type": "application/tar"}
    api._set_auth_headers(headers)  # noqa: SLF001  (docker-py's, as its build uses them)
    try:
        response = api._post(api._url("/build"), data=archive, params=params,  # noqa: SLF001
                             headers=headers, stream=True, timeout=None)
    finally:
        archive.close()
    return api._stream_helper(response, decode=True)  # noqa: SLF001


def _log_lines(stream: Any, watch: _StopWatch, limits: BuildLimits) -> Iterator[str]:
    """The build's non-blank log lines; BuildFailed once it fails, is stopped or is late."""
    deadline = time.monotonic() + limits.timeout
    for chunk in stream:
        if watch.stopped:
            raise BuildFailed("the build was stopped")
        if "error" in chunk:
            raise BuildFailed(_step_error(str(chunk["error"]).strip(), limits.memory))
        if time.monotonic() > deadline:
            raise BuildFailed(f"the build exceeded its time limit of {limits.timeout:g} s")
        text = chunk.get("stream") or chunk.get("status") or ""
        yield from (line for line in text.splitlines() if line.strip())
    if watch.stopped:
        raise BuildFailed("the build was stopped")


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
        if self._thread.is_alive():
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
