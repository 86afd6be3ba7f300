"""binderq's errors. Each carries structured fields; api/errors.py maps them to HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field


class BinderqError(Exception):
    """Base of every error binderq raises on purpose."""

    message = "binderq error"

    def __str__(self) -> str:
        return self.message


@dataclass
class FieldError:
    field: str
    code: str  # missing, missing_field, invalid, already_exists, unprocessable
    message: str = ""


@dataclass
class InvalidInput(BinderqError):
    """The request is well-formed JSON but its content cannot be accepted (422)."""

    resource: str
    message: str = "Validation Failed"
    errors: list[FieldError] = field(default_factory=list)


@dataclass
class NotFound(BinderqError):
    resource: str
    key: str

    @property
    def message(self) -> str:  # type: ignore[override]
        return f"{self.resource} {self.key!r} not found"


@dataclass
class Conflict(BinderqError):
    """The request is valid but the resource's current state forbids it (409)."""

    resource: str
    message: str
    code: str = "unprocessable"


@dataclass
class CapacityExceeded(BinderqError):
    """The service runs as many servers as it may; try again later (429)."""

    limit: int
    used: int
    retry_after: int = 10

    @property
    def message(self) -> str:  # type: ignore[override]
        return f"binderq is at capacity ({self.used} of {self.limit} servers); try again later"


@dataclass
class TooManyBuilds(BinderqError):
    """As many builds are in progress as the operator allows; try again later (429). The
    refused build is recorded `failed` with this message."""

    limit: int
    build_id: str
    retry_after: int = 30

    @property
    def message(self) -> str:  # type: ignore[override]
        return (f"too many builds in progress: the limit of {self.limit} concurrent builds "
                "(BINDERQ_MAX_BUILDS) is reached; try again in a few minutes")


@dataclass
class QuotaExceeded(BinderqError):
    """A fair-share limit is reached (429): a client's servers or builds at once, or a
    staging's max_servers. `field` names the limit (domain/shares.py builds these)."""

    resource: str
    field: str
    limit: int
    used: int
    message: str
    retry_after: int = 30


@dataclass
class DependencyDown(BinderqError):
    """Redis, the Docker engine or the proxy cannot be reached (503)."""

    dependency: str
    detail: str = ""

    @property
    def message(self) -> str:  # type: ignore[override]
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.dependency} is unreachable{detail}"


@dataclass
class Unauthorized(BinderqError):
    message: str = "Requires authentication"


@dataclass
class Forbidden(BinderqError):
    message: str = "Not allowed"


@dataclass
class LaunchFailed(BinderqError):
    """A server could not be started; the message is for the person who asked."""

    message: str


@dataclass
class ImageMissing(LaunchFailed):
    """The engine has no image by this reference (a staged image id that was removed)."""

    image: str = ""


@dataclass
class ImageTransferFailed(LaunchFailed):
    """An image could not be pushed to, or pulled from, the registry; names host and image."""

    host: str = ""
    image: str = ""


@dataclass
class BuildFailed(BinderqError):
    """An image could not be built; the message is for the person who asked."""

    message: str


@dataclass
class RepositoryError(BinderqError):
    """The repository cannot be used: unreachable, no such ref, too large, unsafe (422,
    against field: `repo` for the repository itself, `ref` for what it holds)."""

    message: str
    field: str = "ref"
    resource: str = "Build"


@dataclass
class StaleStaging(BinderqError):
    """The staging changed since the caller read it; read it again and retry."""

    name: str

    @property
    def message(self) -> str:  # type: ignore[override]
        return f"staging {self.name!r} changed meanwhile"


@dataclass
class PoolEmpty(BinderqError):
    """A launch that may only take a pooled server found none ready (tmpnb's door)."""

    staging: str
    retry_after: int = 2

    @property
    def message(self) -> str:  # type: ignore[override]
        return f"the pool of staging {self.staging!r} has no server ready; try again shortly"
