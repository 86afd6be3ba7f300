"""Images on every Docker host, through a real registry: a staging pushes its images there
from the host that has them, and a host pulls them before its first server of that staging,
noting each pull in the staging (`pulls`). An image's id is its config digest, the same on
every engine after a push and a pull, so servers launch by the pinned id everywhere."""

from __future__ import annotations

import logging
from typing import Any

from binderq.adapters.redis_store import RedisStore
from binderq.domain.errors import ImageTransferFailed
from binderq.domain.hosts import registry_reference
from binderq.domain.models import Staging, isoformat, utcnow
from binderq.services.ports import Runtime
from binderq.settings import Settings

log = logging.getLogger(__name__)


def uses_registry(settings: Settings) -> bool:
    """Images travel through the registry when there is one and more than one host."""
    return bool(settings.registry) and settings.many_hosts


def staged_image_ids(staging: Staging) -> list[str]:
    """The image ids a server of this staging runs: its own and its sidecars'."""
    ids = [staging.image_id, *staging.service_image_ids.values()]
    return list(dict.fromkeys(image_id for image_id in ids if image_id))


def push_staged(image_ids: list[str], *, runtime: Runtime, registry: str, host: str) -> None:
    """Push each image id from this host's engine to the registry (ImageTransferFailed
    names the host and the image)."""
    for image_id in image_ids:
        runtime.push_image(image_id, registry_reference(registry, image_id), host=host)


def ensure_on_host(staging: Staging, *, host: str, store: RedisStore, runtime: Runtime,
                   settings: Settings) -> None:
    """Pull the staging's images this host lacks from the registry, noting the pull in the
    staging; ImageTransferFailed (noted too) when one cannot be had."""
    missing = [image_id for image_id in staged_image_ids(staging)
               if runtime.image(image_id) is None]
    if not missing:
        return
    pull: dict[str, Any] = {"version": staging.version, "images": missing,
                            "registry": settings.registry}
    try:
        for image_id in missing:
            runtime.pull_image(registry_reference(settings.registry, image_id), image_id,
                               host=host)
    except ImageTransferFailed as failed:
        store.stagings.record_pull(staging.name, staging.version, host, {
            **pull, "status": "failed", "error": str(failed), "at": isoformat(utcnow())})
        raise
    log.info("host %s pulled %s for staging %s", host, ", ".join(missing), staging.name)
    store.stagings.record_pull(staging.name, staging.version, host, {
        **pull, "status": "pulled", "at": isoformat(utcnow())})
