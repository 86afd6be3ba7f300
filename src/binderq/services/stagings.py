"""Stage: make a named template ready to deploy."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from binderq.adapters.redis_store import RedisStore
from binderq.domain.builds import BuildStatus, provenance_of, staging_from_build
from binderq.domain.errors import (
    Conflict,
    DependencyDown,
    FieldError,
    ImageTransferFailed,
    InvalidInput,
    NotFound,
)
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
from binderq.services.images import push_staged
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

    A PUT that changes nothing answers the stored staging; its stage task then looks
    whether the staging's tags moved (restage_if_moved).
    """
    wanted = staging_from_fields(name, fields)
    check_staging(wanted)  # the API's schema said so already; the build and door paths too
    existing = store.stagings.get(name)
    if existing and existing.template() == wanted.template() \
            and existing.status != StagingStatus.FAILED:
        # Still a re-stage of what the tags name now: a new version if one of them moved.
        task_id = queue.enqueue(STAGE.name, name, existing.version) \
            if existing.status == StagingStatus.READY else None
        return StagingChange(existing, "unchanged", task_id)
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
          queue: TaskQueue | None = None, registry: str = "",
          host: str = "") -> Staging | None:
    """Worker side: find the staging's images on the engine and pin their ids, then mark it
    ready (or failed, saying which image is missing). For a staging that is ready already
    (a PUT that changed nothing), see whether its tags moved: restage_if_moved. With a
    registry (many hosts), the pinned images are pushed there from this host's engine first,
    so every host can pull them (services/images.py); a failed push fails the staging."""
    staging = store.stagings.get(name)
    if staging is None or staging.version != version:
        return None  # deleted or replaced since; the newer PUT has its own task
    problems = staging_problems(staging)  # written into Redis by something else than the API?
    if problems:
        store.stagings.finish(name, version, status=str(StagingStatus.FAILED),
                              error=refusal(problems), updated_at=_now())
        return store.stagings.get(name)
    if staging.status == StagingStatus.READY:
        return restage_if_moved(staging, store=store, runtime=runtime, queue=queue,
                                registry=registry, host=host)
    try:
        images = _staged_images(staging, runtime)
    except DependencyDown as error:
        store.stagings.finish(name, version, status=str(StagingStatus.FAILED), error=str(error),
                              updated_at=_now())
        raise
    missing = [reference for reference, image in images.items() if image is None]
    if missing:
        error = (f"image {missing[0]!r} is not on the Docker engine; build it or load it "
                 "(docker build / docker load) and PUT the staging again")
        store.stagings.finish(name, version, status=str(StagingStatus.FAILED), error=error,
                              updated_at=_now())
        return store.stagings.get(name)
    pins = _pins(staging, images)
    if registry:
        try:
            push_staged(_pinned_ids(pins), runtime=runtime, registry=registry, host=host)
        except ImageTransferFailed as failed:
            store.stagings.finish(name, version, status=str(StagingStatus.FAILED),
                                  error=str(failed), updated_at=_now())
            return store.stagings.get(name)
    # Pinned: every server of this version runs these ids, wherever the tags move later.
    store.stagings.finish(name, version, status=str(StagingStatus.READY), error=None,
                          updated_at=_now(), **pins)
    if queue is not None and store.pools.counters(name) is not None:
        queue.enqueue(REPLENISH.name, name)  # fill the pool with this version
    return store.stagings.get(name)


def restage_if_moved(staging: Staging, *, store: RedisStore, runtime: Runtime,
                     queue: TaskQueue | None = None, registry: str = "",
                     host: str = "") -> Staging | None:
    """A ready staging whose tags name other images now becomes a new version that runs
    those (and its pool rolls over); one whose tags did not move, or are gone, stays as
    it is: it keeps running the ids it pinned."""
    images = _staged_images(staging, runtime)
    if any(image is None for image in images.values()):
        return staging
    pins = _pins(staging, images)
    if (pins["image_id"], pins["service_image_ids"]) == (staging.image_id,
                                                         staging.service_image_ids):
        return staging
    if registry:  # a failed push leaves the staging on the images it had (raised: retried)
        push_staged(_pinned_ids(pins), runtime=runtime, registry=registry, host=host)
    moved = replace(staging, version=store.stagings.next_version(staging.name),
                    updated_at=utcnow(), pulls={}, **pins)
    if store.stagings.save(moved) and queue is not None \
            and store.pools.counters(staging.name) is not None:
        queue.enqueue(REPLENISH.name, staging.name)  # retire the old version's servers
    return store.stagings.get(staging.name)


def _pins(staging: Staging, images: dict[str, Any]) -> dict[str, Any]:
    """What a staging records of its images: the ids its servers run, and the provenance
    labels of its own."""
    main = images[staging.image or ""]
    return {"image_id": main.id,
            "service_image_ids": {svc.name: images[svc.image].id for svc in staging.services},
            "provenance": provenance_of(main.labels)}


def _pinned_ids(pins: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys([pins["image_id"], *pins["service_image_ids"].values()]))


def _staged_images(staging: Staging, runtime: Runtime) -> dict[str, Any]:
    """Each image the staging names (its own and its sidecars'), as the engine has it now
    (None: not there); each asked for once, so one staging pins one id per tag."""
    references = [staging.image or "", *(svc.image for svc in staging.services)]
    return {reference: runtime.image(reference) for reference in dict.fromkeys(references)}


def _now() -> str:
    return utcnow().isoformat().replace("+00:00", "Z")
