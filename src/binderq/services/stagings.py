"""Stage: make a named template ready to deploy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from binderq.adapters.redis_store import RedisStore
from binderq.domain.builds import BuildStatus, staging_from_build
from binderq.domain.errors import Conflict, DependencyDown, FieldError, InvalidInput, NotFound
from binderq.domain.models import (
    DataVolume,
    ExtraService,
    Resources,
    Source,
    Staging,
    StagingStatus,
    utcnow,
)
from binderq.domain.staging_rules import check_staging, refusal, staging_problems
from binderq.services.ports import Runtime, TaskQueue
from binderq.tasks import REPLENISH, STAGE


@dataclass(frozen=True)
class StagingChange:
    staging: Staging
    # "created", "replaced" or "unchanged"
    outcome: str
    task_id: str | None = None


def staging_from_fields(name: str, fields: dict[str, Any]) -> Staging:
    """A Staging from validated API fields (nested dicts become their dataclasses)."""
    values = dict(fields)
    if "resources" in values:
        values["resources"] = Resources(**values["resources"])
    if "source" in values:
        values["source"] = Source(**values["source"])
    values["services"] = [ExtraService(**svc) for svc in values.get("services", [])]
    values["data"] = [DataVolume(**volume) for volume in values.get("data", [])]
    return Staging(name=name, **values)


def with_build_image(fields: dict[str, Any], *, store: RedisStore) -> dict[str, Any]:
    """Staging fields naming a build (`build`) as fields naming its image and source."""
    build_id = fields["build"]
    build = store.builds.get(build_id)
    if build is None:
        raise InvalidInput("Staging", errors=[FieldError("build", "invalid",
                                                         f"no build {build_id!r}")])
    if build.status != BuildStatus.SUCCEEDED:
        detail = f": {build.error}" if build.error else ""
        raise Conflict("Staging", f"build {build_id} is {build.status}{detail}; stage it once "
                                  "it has succeeded, or give `staging` in the build request")
    return staging_from_build(build, fields)


def put_staging(name: str, fields: dict[str, Any], *, store: RedisStore,
                queue: TaskQueue) -> StagingChange:
    """Create or replace a staging; a worker then checks its image on the engine.

    A PUT that changes nothing answers the stored staging and stages nothing again.
    """
    wanted = staging_from_fields(name, fields)
    check_staging(wanted)  # the API's schema said so already; the build and door paths too
    existing = store.stagings.get(name)
    if existing and existing.template() == wanted.template() \
            and existing.status != StagingStatus.FAILED:
        return StagingChange(existing, "unchanged")
    wanted.version = store.stagings.next_version(name)
    wanted.status = StagingStatus.STAGING
    if existing:
        wanted.created_at = existing.created_at
    store.stagings.save(wanted)
    task_id = queue.enqueue(STAGE.name, name, wanted.version)
    if existing and store.pools.counters(name) is not None:
        # Roll the pool over: its servers are of the old version now, and the claim already
        # refuses them; upkeep retires them and starts new ones once this version is ready.
        queue.enqueue(REPLENISH.name, name)
    return StagingChange(wanted, "replaced" if existing else "created", task_id)


def get_staging(name: str, *, store: RedisStore) -> Staging:
    staging = store.stagings.get(name)
    if staging is None:
        raise NotFound("Staging", name)
    return staging


def stage(name: str, version: int, *, store: RedisStore, runtime: Runtime,
          queue: TaskQueue | None = None) -> Staging | None:
    """Worker side: check that the staging's images are on the engine, then mark it."""
    staging = store.stagings.get(name)
    if staging is None or staging.version != version:
        return None  # deleted or replaced since; the newer PUT has its own task
    problems = staging_problems(staging)  # written into Redis by something else than the API?
    if problems:
        store.stagings.finish(name, version, status=str(StagingStatus.FAILED),
                              error=refusal(problems), updated_at=_now())
        return store.stagings.get(name)
    try:
        missing = _missing_images(staging, runtime)
    except DependencyDown as error:
        store.stagings.finish(name, version, status=str(StagingStatus.FAILED), error=str(error),
                              updated_at=_now())
        raise
    if missing:
        error = (f"image {missing[0]!r} is not on the Docker engine; build it or load it "
                 "(docker build / docker load) and PUT the staging again")
        store.stagings.finish(name, version, status=str(StagingStatus.FAILED), error=error,
                              updated_at=_now())
    else:
        image = runtime.image(staging.image or "")
        store.stagings.finish(name, version, status=str(StagingStatus.READY), error=None,
                              image_id=image.id if image else None, updated_at=_now())
        if queue is not None and store.pools.counters(name) is not None:
            queue.enqueue(REPLENISH.name, name)  # fill the pool with this version
    return store.stagings.get(name)


def _missing_images(staging: Staging, runtime: Runtime) -> list[str]:
    images = [staging.image or "", *(svc.image for svc in staging.services)]
    return [image for image in images if runtime.image(image) is None]


def _now() -> str:
    return utcnow().isoformat().replace("+00:00", "Z")
