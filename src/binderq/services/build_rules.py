"""The rules a build's Dockerfile is held to before the Docker engine sees it.

Reason to change: who is held to which rule, or where the list of base images comes from.

Every build: no `ADD` from a URL (the engine would fetch it from binderq's own network).
A build asked for without a token (an anonymous, address-keyed client): FROM and COPY --from
only the operator's base images, BINDERQ_BUILD_BASE_IMAGES, always with the notebook image;
unset, the images of public stagings, which anyone may launch anyway. A non-public
staging's image is not offered: a build could read what its launch rule keeps from anyone.
"""

from __future__ import annotations

from binderq.adapters.redis_store import RedisStore
from binderq.domain.builds import Build, BuildSpec, SpecError, is_restricted
from binderq.domain.dockerfile import RuleBroken, check_dockerfile
from binderq.settings import Settings


def base_images(*, store: RedisStore, settings: Settings) -> list[str]:
    """The images a restricted build may start from."""
    listed = [image.strip() for image in settings.build_base_images.split(",")
              if image.strip()]
    if not listed:
        listed = [staging.image for staging in store.stagings.list()
                  if staging.public and staging.image]
    return sorted({settings.notebook_image, *listed})


def check_build_rules(build: Build, spec: BuildSpec, *, store: RedisStore,
                      settings: Settings) -> None:
    """SpecError, saying what to change, if the spec breaks a rule the build is held to."""
    allowed = base_images(store=store, settings=settings) if is_restricted(build) else None
    try:
        check_dockerfile(spec.dockerfile, base_images=allowed)
    except RuleBroken as error:
        raise SpecError(f"{spec.files[0] if spec.from_repository else 'Dockerfile'}: "
                        f"{error}") from error
