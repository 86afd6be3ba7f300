"""Build: turn a repository at a ref into an image, cached by commit; stage it if asked."""

from __future__ import annotations

import logging
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from binderq.adapters.redis_store import RedisStore
from binderq.domain.access import (
    Caller,
    may_read_build,
    require_cancel_right,
    require_staging_right,
)
from binderq.domain.builds import (
    CONFIG_DIRS,
    ENVIRONMENT_FILES,
    UNSUPPORTED,
    Build,
    BuildLimits,
    BuildSpec,
    BuildStatus,
    SpecError,
    attempts_exhausted,
    build_cache_key,
    build_spec,
    choose_config_dir,
    cut_line,
    image_name,
    log_line_cost,
    provenance_labels,
    refused_build_ttl,
    staging_from_build,
    truncation_notice,
    with_labels,
)
from binderq.domain.errors import BinderqError, Conflict, NotFound, QuotaExceeded, TooManyBuilds
from binderq.domain.hosts import registry_reference
from binderq.domain.models import utcnow
from binderq.domain.shares import share_of
from binderq.domain.spec import memory_bytes
from binderq.domain.tokens import new_task_id
from binderq.services import observe
from binderq.services.build_rules import check_build_rules
from binderq.services.images import uses_registry
from binderq.services.pools import check_pool_size, set_pool_size
from binderq.services.ports import Builder, Repositories, TaskQueue
from binderq.services.stagings import put_staging
from binderq.settings import Settings
from binderq.tasks import BUILD

log = logging.getLogger(__name__)

_READ = {*ENVIRONMENT_FILES, *UNSUPPORTED, "Dockerfile"}


# -- API side -----------------------------------------------------------------------------


def request_build(repo: str, ref: str, staging: dict[str, Any] | None, *, caller: Caller,
                  store: RedisStore, queue: TaskQueue, git: Repositories,
                  settings: Settings) -> Build:
    """The build of repo at ref for caller: a finished one from the cache (cached=True), the
    one already running for the same commit, or a new one queued, within the service's limit
    and the caller's share of builds in progress (domain/shares.py). Whichever it is, caller
    may read it from now on. Only the operator may ask for a staging of it."""
    if staging is not None:
        require_staging_right(caller)
    if staging and staging.get("pool_size") is not None:
        check_pool_size(staging["pool_size"], settings, resource="Build",
                        field="staging.pool_size")
    commit = git.resolve(repo, ref)  # checks repo and ref before git runs
    share = share_of(caller, max_servers=settings.client_max_servers,
                     max_builds=settings.client_max_builds)
    build = Build(id=secrets.token_hex(6), repo=repo, ref=ref, commit=commit,
                  task_id=new_task_id(), staging=staging, requested_by=share.client)
    key = build_cache_key(build, settings.notebook_image)
    store.builds.save(build)
    existing = _claim_or_share(key, build, store=store)
    if existing is not None:
        store.builds.forget(build.id)
        store.builds.add_reader(existing, caller.client)
        if staging is not None:
            _stage_when_built(existing, staging, store=store, queue=queue, settings=settings)
        return replace(existing, cached=True) if existing.status == \
            BuildStatus.SUCCEEDED else existing
    try:
        if store.builds.admit(build.id, settings.max_builds, client=share.client,
                              client_limit=share.max_builds) is not None:
            raise TooManyBuilds(limit=settings.max_builds, build_id=build.id)
    except (TooManyBuilds, QuotaExceeded) as refused:
        _fail(store, build, refused.message, settings,
              keep_for=refused_build_ttl(settings.build_ttl))  # it never ran: an hour is enough
        raise
    store.builds.append_log(build.id, phase=str(BuildStatus.QUEUED),
                            message="waiting for a builds worker")
    try:
        queue.enqueue(BUILD.name, build.id, task_id=build.task_id)
    except BinderqError as error:
        _fail(store, build, f"could not queue the build: {error}", settings)
        raise
    return build


_SHAREABLE = {BuildStatus.QUEUED, BuildStatus.FETCHING, BuildStatus.BUILDING,
              BuildStatus.SUCCEEDED}

# Times a request takes over a cache key from failed or vanished builds before it gives up.
_CLAIM_ATTEMPTS = 5


def _claim_or_share(key: str, build: Build, *, store: RedisStore) -> Build | None:
    """Claim key for build (None), or the running or succeeded build that holds it (to
    share). A failed or vanished holder gives it up; whoever claims it next builds, and
    every other request shares that one."""
    for _ in range(_CLAIM_ATTEMPTS):
        owner = store.builds.claim_key(key, build.id)
        if owner == build.id:
            return None
        existing = store.builds.get(owner)
        if existing is not None and existing.status in _SHAREABLE:
            return existing
        store.builds.release_key(key, owner)
    store.builds.forget(build.id)
    raise Conflict("Build", "identical builds keep failing as they are asked for; "
                            "try again in a minute")


def get_build(build_id: str, *, caller: Caller, store: RedisStore) -> Build:
    """A build the caller may read (it asked for it, or is the operator); else NotFound, as
    if there were no such build."""
    build = store.builds.get(build_id)
    if build is None or not may_read_build(caller, store.builds.readers(build_id)):
        raise NotFound("Build", build_id)
    return build


def list_builds(caller: Caller, *, store: RedisStore, repo: str | None = None,
                status: str | None = None, limit: int = 50) -> list[Build]:
    """Builds newest first, of repo and in status if given: every build for the operator,
    the builds it asked for for anyone else."""
    wanted = limit if repo is None and status is None else 500
    found = store.builds.recent(wanted) if caller.is_operator else \
        store.builds.recent_of(caller.client, wanted)
    return [build for build in found if repo in (None, build.repo)
            and status in (None, str(build.status))][:limit]


def build_log_text(build_id: str, *, caller: Caller, store: RedisStore) -> str:
    get_build(build_id, caller=caller, store=store)
    return "".join(_log_line(entry) for _, entry in store.builds.log(build_id))


LogEntry = tuple[str, dict[str, str]]
# Silence after which a follower hears of the build anyway (a keepalive). Below the Redis
# client's socket timeout (bootstrap.REDIS_SOCKET_TIMEOUT): a longer blocking read would
# fail as if Redis were down.
KEEPALIVE_MS = 4000


def follow_deadline(settings: Settings) -> float:
    """When, on time.monotonic's clock, a follower starting now stops waiting for a build:
    its time in the queue (as long as the BinderHub door waits) and its time limit; then the
    stream ends (the build goes on, and can be followed again)."""
    return time.monotonic() + settings.build_queue_timeout + settings.build_timeout


def follow_build(build_id: str, *, store: RedisStore, deadline: float,
                 quiet_ms: int = KEEPALIVE_MS) -> Iterator[list[LogEntry]]:
    """The build's log as it grows: each batch of new entries, or an empty one after
    quiet_ms of silence (time for a keepalive), until the build is final (or gone) and its
    log all given, or the deadline (time.monotonic) has passed. Every final move logs its
    phase, so the wait ends with the build."""
    after = "-"
    while time.monotonic() < deadline:
        build = store.builds.get(build_id)
        final = build is None or build.status.is_final
        entries = store.builds.log(build_id, after=after, block_ms=None if final else quiet_ms)
        if entries:
            after = entries[-1][0]
        elif final:
            return
        yield entries


def _log_line(entry: dict[str, str]) -> str:
    if "phase" in entry:
        return f"[binderq] {entry['phase']}: {entry.get('message', '')}\n"
    return entry.get("line", "") + "\n"


# -- worker side --------------------------------------------------------------------------


def run_build(build_id: str, *, store: RedisStore, git: Repositories, builder: Builder,
              queue: TaskQueue, settings: Settings) -> Build | None:
    """Fetch the commit, choose its spec, docker build it, stage it if asked. Every failure
    ends the build `failed` with the step that failed, and frees its cache key."""
    build = store.builds.get(build_id)
    if build is not None and build.status == BuildStatus.SUCCEEDED:
        stage_built(build, store=store, queue=queue, settings=settings)  # a task run again
    if build is None or build.status.is_final:
        return build
    if attempts_exhausted(build):
        return _fail(store, build, attempts_exhausted(build), settings)
    step = "fetching"
    try:
        store.builds.move(build.id, BuildStatus.FETCHING, _fetching(build),
                          started_at=utcnow(), attempts=build.attempts + 1)
        with tempfile.TemporaryDirectory(prefix="binderq-build-") as scratch:
            checkout = git.fetch(build.repo, build.commit, Path(scratch) / "repo")
            step = "reading the environment"
            spec = read_spec(checkout, base_image=settings.notebook_image)
            step = "checking the build rules"
            check_build_rules(build, spec, store=store, settings=settings)
            image = image_name(build.repo, build.commit, spec)
            step = "building"
            labels = provenance_labels(build, instance=settings.instance,
                                       spec_hash=spec.spec_hash)
            dockerfile = with_labels(spec.dockerfile, labels)
            made_of = ", ".join(spec.files) or "the base image"
            if store.builds.move(build.id, BuildStatus.BUILDING,
                                 f"building {image} from {made_of}", image=image) is None:
                return store.builds.get(build.id)  # cancelled meanwhile
            image_id = builder.build_image(
                checkout, dockerfile, image, expected_labels=labels,
                limits=_build_limits(settings), on_line=BuildLog(build.id, store, settings).add,
                should_stop=lambda: _is_cancelled(store, build.id))
            if uses_registry(settings):  # every host can pull it (services/images.py)
                step = "pushing to the registry"
                builder.push_image(image_id, registry_reference(settings.registry, image_id),
                                   host=settings.host().name)
    except (BinderqError, SpecError) as error:
        return _fail(store, build, f"{step} failed: {error}", settings)
    done = store.builds.move(build.id, BuildStatus.SUCCEEDED, f"built {image}",
                             finished_at=utcnow())
    observe.build_finished(done, store=store)
    if done is None:  # cancelled as it finished: the image goes too
        builder.remove_image(image)
    else:
        store.builds.key_lives_with_build(build_cache_key(done, settings.notebook_image),
                                          done.id)
        stage_built(done, store=store, queue=queue, settings=settings)
    return store.builds.get(build.id)


def _fetching(build: Build) -> str:
    again = f" (attempt {build.attempts + 1}: the last one ended without a result)" \
        if build.attempts else ""
    return "fetching the repository" + again


def _build_limits(settings: Settings) -> BuildLimits:
    return BuildLimits(memory=memory_bytes(settings.build_memory),
                       cpu_shares=settings.build_cpu_shares, timeout=settings.build_timeout)


def stage_built(build: Build, *, store: RedisStore, queue: TaskQueue,
                settings: Settings) -> None:
    """Stage a built image under every staging asked of its build. Doing it again changes
    nothing: an unchanged staging stays as it is. A staging that fails is logged, and the
    build stays succeeded."""
    for staging in [build.staging, *store.builds.stagings(build.id)]:
        if not staging:
            continue
        try:
            _stage(build, staging, store=store, queue=queue, settings=settings)
        except BinderqError as error:
            log.warning("build %s: staging %s failed: %s", build.id, staging["name"], error)
            BuildLog(build.id, store, settings).add(
                f"[binderq] staging {staging['name']} failed: {error}")


def fail_build(build_id: str, reason: str, *, store: RedisStore,
               settings: Settings) -> Build | None:
    """End a build `failed` from outside its run (its time limit, say)."""
    build = store.builds.get(build_id)
    return _fail(store, build, reason, settings) if build else None


def cancel_build(build_id: str, *, caller: Caller, store: RedisStore,
                 settings: Settings) -> Build:
    """Stop a queued or running build; a finished one is left as it is. A client cancels
    only a build nobody else asked for too; the operator any."""
    build = get_build(build_id, caller=caller, store=store)
    if build.status.is_final:
        return build
    require_cancel_right(caller, store.builds.readers(build_id))
    if store.builds.move(build.id, BuildStatus.CANCELLED, "cancelled", error="cancelled",
                         finished_at=utcnow()) is not None:
        store.builds.release_key(build_cache_key(build, settings.notebook_image), build.id)
    return get_build(build_id, caller=caller, store=store)


def read_spec(checkout: Path, *, base_image: str) -> BuildSpec:
    """The spec of a checkout, by repo2docker's conventions."""
    present = {path.name for path in checkout.iterdir() if path.is_dir()}
    config_dir = choose_config_dir(present & set(CONFIG_DIRS))
    folder = checkout / config_dir if config_dir else checkout
    files = {path.name: path.read_bytes() for path in folder.iterdir()
             if path.name in _READ and path.is_file()}
    return build_spec(config_dir, files, base_image=base_image)


class BuildLog:
    """A build's log lines as a builds worker keeps them: each cut to
    BINDERQ_BUILD_LOG_LINE_BYTES, and all within BINDERQ_BUILD_LOG_BYTES (counted in Redis,
    so a build run again does not start afresh). Once the log is full, later lines are
    dropped here, without asking Redis: a build that prints 50 MB costs it one notice."""

    def __init__(self, build_id: str, store: RedisStore, settings: Settings) -> None:
        self._build_id = build_id
        self._store = store
        self._line_bytes = settings.build_log_line_bytes
        self._limit = settings.build_log_bytes
        self.full = False

    def add(self, line: str) -> None:
        """Keep line, cut if long, unless the log is full."""
        if self.full:
            return
        kept = cut_line(line, self._line_bytes)
        self.full = not self._store.builds.append_line(
            self._build_id, kept, cost=log_line_cost(kept), limit=self._limit,
            notice=truncation_notice(self._limit))


def _is_cancelled(store: RedisStore, build_id: str) -> bool:
    build = store.builds.get(build_id)
    return build is None or build.status == BuildStatus.CANCELLED


def _fail(store: RedisStore, build: Build, reason: str, settings: Settings, *,
          keep_for: int | None = None) -> Build | None:
    log.warning("build %s failed: %s", build.id, reason)
    failed = store.builds.move(build.id, BuildStatus.FAILED, reason, keep_for=keep_for,
                               error=reason, finished_at=utcnow())
    observe.build_finished(failed, store=store)
    store.builds.release_key(build_cache_key(build, settings.notebook_image), build.id)
    return store.builds.get(build.id)


def _stage(build: Build, staging: dict[str, Any], *, store: RedisStore, queue: TaskQueue,
           settings: Settings) -> None:
    name = staging["name"]
    # The build's repository and commit are the source, whatever the request said.
    asked = {key: value for key, value in staging.items() if key != "source"}
    put_staging(name, staging_from_build(build, asked), store=store, queue=queue)
    if staging.get("pool_size") is not None:
        set_pool_size(name, staging["pool_size"], store=store, queue=queue, settings=settings)


def _stage_when_built(build: Build, staging: dict[str, Any], *, store: RedisStore,
                      queue: TaskQueue, settings: Settings) -> None:
    """Stage a shared build's image under staging too: once it is built, or now if it is."""
    if store.builds.add_staging(build.id, staging):
        return  # its worker stages it after the build succeeds
    latest = store.builds.get(build.id)
    if latest is not None and latest.status == BuildStatus.SUCCEEDED:
        _stage(latest, staging, store=store, queue=queue, settings=settings)
