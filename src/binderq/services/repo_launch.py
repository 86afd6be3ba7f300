"""Build → stage → launch of a repository at a ref, told as progress events, each wait with
a deadline: the BinderHub door's flow (and the badge links' to come). A door renders the
events; it decides nothing."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from binderq.adapters.redis_store import RedisStore
from binderq.domain.access import Caller, require_build_right, require_launch_right
from binderq.domain.builds import Build, BuildStatus, staging_from_build
from binderq.domain.errors import BinderqError, LaunchFailed, QuotaExceeded, TooManyBuilds
from binderq.domain.models import Server, ServerStatus, Staging, StagingStatus
from binderq.services import builds, deploy, stagings
from binderq.services.ports import TaskQueue
from binderq.settings import Settings

PHASE_OF_BUILD = {"queued": "waiting", "fetching": "fetching", "building": "building"}
QUIET = 15.0  # seconds of silence after which a heartbeat is due
POLL = 0.25  # seconds between looks at a staging or a server
STAGING_DEADLINE = 120.0  # a launch worker checks an image in well under a second


@dataclass(frozen=True)
class Progress:
    """One step of the flow: phase waiting, fetching, building, built, launching, ready or
    failed, with a message; `ready` carries url, token and image. An empty phase is a
    heartbeat: nothing new, but the flow is alive."""

    phase: str
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


HEARTBEAT = Progress("")


@dataclass(frozen=True)
class Waits:
    """How the flow waits; tests pass a fake clock and sleep."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def build_and_launch(repo: str, ref: str, *, caller: Caller, store: RedisStore,
                     queue: TaskQueue, git: Any, settings: Settings,
                     cache: deploy.StagingCache | None = None,
                     waits: Waits | None = None) -> Iterator[Progress]:
    """Check the caller's rights and ask for the build now (so refusals are plain errors);
    the returned events then follow it through to a ready server, or to `failed`.

    The flow's stagings are public: under open launch auth anyone may build and launch a
    repository here, as on mybinder, and under token auth the one launch rule asks for the
    launch scope, as at every other door.
    """
    open_door = settings.launch_auth == "open"
    require_build_right(caller, door_is_open=open_door)
    require_launch_right(caller, public=True, launch_auth=settings.launch_auth)
    try:
        build = builds.request_build(repo, ref, None, caller=caller, store=store,
                                     queue=queue, git=git, settings=settings)
    except (TooManyBuilds, QuotaExceeded) as error:  # BinderHub says so in the stream
        return iter([Progress("failed", error.message, _retry_after(error))])
    flow = _Flow(caller, store, queue, settings, cache or deploy.StagingCache(),
                 waits or Waits())
    return flow.run(build)


def staging_name(image: str) -> str:
    """The staging a built image is launched from: one per image, made on first launch."""
    return "bh-" + hashlib.sha256(image.encode()).hexdigest()[:16]


@dataclass
class _Flow:
    caller: Caller
    store: RedisStore
    queue: TaskQueue
    settings: Settings
    cache: deploy.StagingCache
    waits: Waits

    def run(self, build: Build) -> Iterator[Progress]:
        try:
            if not build.cached:  # a cached build's log is history: go straight to launching
                build = yield from self._follow_build(build.id)
            yield Progress("built", f"image {build.image} is built")
            staging = yield from self._staged(build)
            yield Progress("launching", "starting your server")
            launch = deploy.launch(staging.name, caller=self.caller, store=self.store,
                                   queue=self.queue, settings=self.settings,
                                   stagings=self.cache)
            server = yield from self._until_ready(launch.server.id)
        except BinderqError as error:
            yield Progress("failed", str(error), _retry_after(error))
            return
        yield Progress("ready", "server ready", {"url": server.url, "token": launch.token,
                                                 "image": build.image})

    def _follow_build(self, build_id: str) -> Iterator[Progress]:
        """The build's phases and log lines until it is final; returns the succeeded build.
        LaunchFailed if no builds worker starts it by its queue deadline."""
        queue_deadline = self.waits.clock() + self.settings.build_queue_timeout
        started = False
        for entries in builds.follow_build(build_id, store=self.store,
                                           deadline=builds.follow_deadline(self.settings)):
            yield from (_progress_of(entry) for _, entry in entries)
            if not entries:
                yield HEARTBEAT
            started = started or self._build_started(build_id)
            if not started and self.waits.clock() > queue_deadline:
                raise LaunchFailed(f"no builds worker started build {build_id} within "
                                   f"{self.settings.build_queue_timeout:.0f} s (it stays "
                                   "queued); is a builds worker running? Try again later")
        build = self.store.builds.get(build_id)
        if build is not None and not build.status.is_final:
            raise LaunchFailed(f"build {build_id} did not finish in time; is a builds "
                               "worker running? Try again later")
        if build is None or build.status != BuildStatus.SUCCEEDED:
            raise LaunchFailed(build.error or f"build {build.status}" if build
                               else f"build {build_id} vanished")
        return build

    def _build_started(self, build_id: str) -> bool:
        build = self.store.builds.get(build_id)
        return build is None or build.status != BuildStatus.QUEUED

    def _staged(self, build: Build) -> Iterator[Progress]:
        """The built image's staging (made, or found unchanged), once ready."""
        name = staging_name(build.image or "")
        fields = staging_from_build(build, {"public": True})
        staging: Staging | None = stagings.put_staging(
            name, fields, store=self.store, queue=self.queue).staging
        deadline = self.waits.clock() + STAGING_DEADLINE
        while staging is not None and staging.status == StagingStatus.STAGING:
            if self.waits.clock() > deadline:
                raise LaunchFailed(f"staging {name} was not ready within "
                                   f"{STAGING_DEADLINE:.0f} s; is a launch worker running?")
            yield HEARTBEAT
            self.waits.sleep(POLL)
            staging = self.store.stagings.get(name)
        if staging is None:
            raise LaunchFailed(f"staging {name} vanished while it was being made ready")
        if staging.status == StagingStatus.FAILED:
            raise LaunchFailed(staging.error or f"staging {name} failed")
        return staging

    def _until_ready(self, server_id: str) -> Iterator[Progress]:
        """The server once ready; LaunchFailed if it fails, vanishes or takes too long."""
        deadline = self.waits.clock() + self.settings.launch_timeout + 30
        quiet_since = self.waits.clock()
        while True:
            server = self.store.servers.get(server_id)
            _check_launching(server, server_id)
            if server is not None and server.status == ServerStatus.READY:
                return server
            if self.waits.clock() > deadline:
                raise LaunchFailed(f"server {server_id} was not ready within "
                                   f"{self.settings.launch_timeout:.0f} s; is a launch "
                                   "worker running?")
            if self.waits.clock() - quiet_since > QUIET:
                quiet_since = self.waits.clock()
                yield HEARTBEAT
            self.waits.sleep(POLL)


def _retry_after(error: BinderqError) -> dict[str, Any]:
    """A refusal that passes (capacity, a fair share) says when to try again, as the
    429's Retry-After would: the launch page counts it down and retries."""
    seconds = getattr(error, "retry_after", None)
    return {"retry_after": seconds} if seconds else {}


def _check_launching(server: Server | None, server_id: str) -> None:
    if server is None:
        raise LaunchFailed(f"server {server_id} vanished while starting")
    if server.status.is_terminal or server.status == ServerStatus.STOPPING:
        raise LaunchFailed(server.error or f"server {server_id} is {server.status}")


def _progress_of(entry: dict[str, str]) -> Progress:
    if entry.get("phase") in PHASE_OF_BUILD:
        return Progress(PHASE_OF_BUILD[entry["phase"]], entry.get("message", ""))
    if "line" in entry:
        return Progress("building", entry["line"] + "\n")
    return HEARTBEAT  # a final phase: the build record says how it ended
