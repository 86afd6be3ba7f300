"""What the collector removes: images of builds Redis forgot that no staging uses, and
door-made stagings nobody used for BINDERQ_BUILD_TTL. Pure: services/collect.py observes
and acts.

Reason to change: what binderq keeps, and for how long.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from binderq.domain.models import Server, Staging

# The tag every built image gets (domain/builds.image_name).
BUILD_TAG_PREFIX = "binderq-build/"
# The stagings the BinderHub door and the repository launch make (repo_launch.staging_name).
_DOOR_STAGING = re.compile(r"^bh-[0-9a-f]{16}$")


@dataclass(frozen=True)
class BuiltImage:
    """An image a build of this deployment made, as the engine has it now."""

    id: str
    tags: tuple[str, ...]
    build_id: str  # its binderq.build.id label


def normal_reference(reference: str) -> str:
    """A tag as the engine lists it: with `:latest` when it names none."""
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last or "@" in last else f"{reference}:latest"


def images_in_use(stagings: Iterable[Staging]) -> set[str]:
    """Every image a staging names or pinned: its tags and its ids, sidecars' too. A
    staging still being staged has pinned nothing yet: its tags count."""
    used: set[str] = set()
    for staging in stagings:
        references = [staging.image, *(service.image for service in staging.services)]
        used |= {normal_reference(ref) for ref in references if ref}
        used |= {ref for ref in references if ref}  # an id given as the image
        used |= {image_id for image_id in
                 [staging.image_id, *staging.service_image_ids.values()] if image_id}
    return used


def images_to_remove(images: Iterable[BuiltImage], *, live_builds: set[str],
                     in_use: set[str], building: set[str]) -> dict[str, list[str]]:
    """Image id -> the references to remove (its build tags; its id when it has no tag):
    images whose build Redis forgot, that no staging names or pinned and that no build in
    progress is making (building: their tags). An image someone else tagged too keeps
    that tag, and so stays."""
    chosen: dict[str, list[str]] = {}
    for image in images:
        if image.build_id in live_builds or _is_used(image, in_use | building):
            continue
        ours = [tag for tag in image.tags if tag.startswith(BUILD_TAG_PREFIX)]
        references = ours if image.tags else [image.id]
        if references:
            chosen[image.id] = references
    return chosen


def _is_used(image: BuiltImage, in_use: set[str]) -> bool:
    return image.id in in_use or image.id.removeprefix("sha256:") in in_use \
        or any(tag in in_use for tag in image.tags)


def is_door_staging(name: str) -> bool:
    """Whether a staging is one the BinderHub door made (bh-<hash of its image>)."""
    return bool(_DOOR_STAGING.match(name))


def last_used(staging: Staging, servers: Iterable[Server]) -> datetime:
    """When a staging was last changed, or a server of it started, was handed out or
    stopped (as far as the server records, kept BINDERQ_RECORD_TTL, remember)."""
    moments = [staging.created_at, staging.updated_at]
    for server in servers:
        if server.staging == staging.name:
            moments += [moment for moment in (server.created_at, server.claimed_at,
                                              server.stopped_at) if moment]
    return max(moments)


def door_stagings_to_remove(stagings: Iterable[Staging], servers: list[Server], *,
                            pooled: set[str], now: datetime, ttl: float) -> list[str]:
    """Door-made stagings unused for ttl seconds, with no server that is not stopped or
    failed (servers: every record Redis has) and no pool (pooled: stagings with a pool)."""
    busy = {server.staging for server in servers if not server.status.is_terminal}
    too_old = now - timedelta(seconds=ttl)
    return sorted(staging.name for staging in stagings
                  if is_door_staging(staging.name) and staging.name not in busy
                  and staging.name not in pooled
                  and last_used(staging, servers) < too_old)
