"""Builds: what a repository's environment files mean, and the image they make. Pure."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from binderq.domain.access import is_anonymous_client
from binderq.domain.dockerfile import escape_character
from binderq.domain.models import jsonable, parse_time, utcnow


class BuildStatus(StrEnum):
    QUEUED = "queued"
    FETCHING = "fetching"
    BUILDING = "building"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELLED)


@dataclass
class Build:
    id: str
    repo: str
    ref: str
    commit: str
    status: BuildStatus = BuildStatus.QUEUED
    image: str | None = None
    cached: bool = False
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    task_id: str | None = None
    # Staging fields to stage the image under once built ({"name": ..., ...}), or None.
    staging: dict[str, Any] | None = None
    # The client key (domain/access.client_key) of the caller who asked for this build.
    requested_by: str = ""
    # Runs of its task so far: a run that kills its worker is delivered again, at most
    # MAX_BUILD_ATTEMPTS times in all.
    attempts: int = 0


MAX_BUILD_ATTEMPTS = 3


def attempts_exhausted(build: Build) -> str | None:
    """Why a build's next run must not start (its runs so far all ended without a result),
    or None."""
    if build.attempts < MAX_BUILD_ATTEMPTS:
        return None
    return (f"gave up after {build.attempts} attempts: each ended without a result (its "
            "builds worker was killed, or ran out of memory, mid-build); build it again, "
            "and if it fails the same way, the repository is the likely cause")


# Seconds a refused build (over a limit: it never ran) stays readable, at most.
REFUSED_BUILD_TTL = 3600


def refused_build_ttl(build_ttl: int) -> int:
    """How long a build refused at the door is kept: an hour, or less if builds live less."""
    return min(REFUSED_BUILD_TTL, build_ttl)


# Bytes a log line costs besides its text: Redis keeps each in a stream entry of its own
# (measured 11 to 27 bytes each), so a log of tiny lines is bounded as well as one of long ones.
LOG_LINE_CHARGE = 32


def log_line_cost(line: str) -> int:
    """What a kept line counts against a build's log limit (BINDERQ_BUILD_LOG_BYTES)."""
    return len(line.encode()) + LOG_LINE_CHARGE


def cut_line(line: str, limit: int) -> str:
    """line if it has at most limit bytes (UTF-8); else its first bytes, up to a character's
    end, and a marker that says how long it was, limit bytes in all."""
    data = line.encode()
    if len(data) <= limit:
        return line
    marker = f" [line cut: {len(data)} bytes, BINDERQ_BUILD_LOG_LINE_BYTES]"
    return data[:limit - len(marker)].decode(errors="ignore") + marker


def truncation_notice(limit: int) -> str:
    """The last line a build's log keeps once it holds limit bytes."""
    return (f"[binderq] log truncated after {limit} bytes (BINDERQ_BUILD_LOG_BYTES, "
            f"{LOG_LINE_CHARGE} more counted per line): the build goes on; its later lines "
            "are not kept")


@dataclass(frozen=True)
class BuildLimits:
    """What one build may use: bytes of memory (swap included), a CPU share, seconds."""

    memory: int
    cpu_shares: int
    timeout: float


def build_to_dict(build: Build) -> dict[str, Any]:
    """JSON-ready dict of a build record (times as ISO 8601 strings)."""
    return {key: jsonable(value) for key, value in vars(build).items()}


def build_from_dict(record: dict[str, Any]) -> Build:
    values = dict(record)
    values["status"] = BuildStatus(values["status"])
    for key in ("created_at", "started_at", "finished_at"):
        values[key] = parse_time(values.get(key))
    return Build(**values)


def lost_builds(builds: list[Build], *, now: datetime, build_timeout: float,
                grace: float = 120.0) -> dict[str, str]:
    """Running builds that no worker can still be running: past their time limit by more
    than grace (the limit stops a live worker's build). Build id -> why."""
    running = (BuildStatus.FETCHING, BuildStatus.BUILDING)
    too_old = now - timedelta(seconds=build_timeout + grace)
    return {build.id: f"the build was lost: its worker did not finish it within the time "
                      f"limit of {build_timeout:g} s (BINDERQ_BUILD_TIMEOUT); build it again"
            for build in builds
            if build.status in running and build.started_at and build.started_at < too_old}


# Files repo2docker users know that binderq cannot honour yet: a build with one fails and
# names it, rather than ignoring it and building something else than the author meant.
UNSUPPORTED = {
    "environment.yml": "conda environments",
    "Pipfile": "Pipenv",
    "Pipfile.lock": "Pipenv",
    "install.R": "R packages",
    "DESCRIPTION": "R packages",
    "Project.toml": "Julia projects",
    "REQUIRE": "Julia projects",
    "default.nix": "Nix",
    "runtime.txt": "choosing a language version",
    "setup.py": "installing the repository as a package",
}
# Read in this order; each adds a step to the generated Dockerfile.
ENVIRONMENT_FILES = ("apt.txt", "requirements.txt", "postBuild", "start")
CONFIG_DIRS = ("binder", ".binder")


class SpecError(ValueError):
    """The repository's environment cannot be built; the message names the file."""


@dataclass(frozen=True)
class BuildSpec:
    """How to build a checkout: a Dockerfile (the repository's or a generated one)."""

    dockerfile: str  # its text
    config_dir: str  # "", "binder" or ".binder"
    files: tuple[str, ...]  # the environment files it reads, relative to the checkout
    from_repository: bool

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(self.dockerfile.encode()).hexdigest()


def choose_config_dir(present: set[str]) -> str:
    """binder/ or .binder/ takes precedence over the root, as in repo2docker."""
    found = [name for name in CONFIG_DIRS if name in present]
    if len(found) > 1:
        raise SpecError("the repository has both binder/ and .binder/; keep one")
    return found[0] if found else ""


def build_spec(config_dir: str, files: dict[str, bytes], *, base_image: str) -> BuildSpec:
    """The spec of a checkout whose config_dir holds files (name -> content)."""
    def path(name: str) -> str:
        return f"{config_dir}/{name}" if config_dir else name

    for name, meaning in UNSUPPORTED.items():
        if name in files:
            raise SpecError(f"{path(name)}: {meaning} are not supported yet; use a "
                            "Dockerfile, requirements.txt, apt.txt or postBuild")
    if "Dockerfile" in files:
        return BuildSpec(files["Dockerfile"].decode(errors="replace"), config_dir,
                         (path("Dockerfile"),), from_repository=True)
    used = tuple(name for name in ENVIRONMENT_FILES if name in files)
    return BuildSpec(generated_dockerfile(base_image, config_dir, used, files), config_dir,
                     tuple(path(name) for name in used), from_repository=False)


def generated_dockerfile(base_image: str, config_dir: str, used: tuple[str, ...],
                         files: dict[str, bytes]) -> str:
    """A Dockerfile on the base image for the environment files present."""
    def path(name: str) -> str:
        return f"/home/jovyan/{config_dir}/{name}" if config_dir else f"/home/jovyan/{name}"

    # The contents are part of the text, so the spec hash changes when a file does.
    digest = hashlib.sha256(b"".join(files[name] for name in used)).hexdigest()[:16]
    lines = [f"FROM {base_image}", f"# environment {digest}", "USER root"]
    if "apt.txt" in used:
        lines.append(f"RUN apt-get update -qq && grep -v '^#' {path('apt.txt')} | xargs "
                     "apt-get install -y -qq --no-install-recommends "
                     "&& rm -rf /var/lib/apt/lists/*")
    lines += ["COPY --chown=1000:1000 . /home/jovyan", "USER jovyan", "WORKDIR /home/jovyan"]
    if "requirements.txt" in used:
        lines.append(f"RUN python3 -m pip install --no-cache-dir --user "
                     "--break-system-packages --disable-pip-version-check "
                     f"-r {path('requirements.txt')}")
    if "postBuild" in used:
        lines.append(f"RUN chmod +x {path('postBuild')} && {path('postBuild')}")
    if "start" in used:
        lines += [f"RUN chmod +x {path('start')}", f'ENTRYPOINT ["{path("start")}"]']
    return "\n".join(lines) + "\n"


def with_labels(dockerfile: str, labels: dict[str, str]) -> str:
    """The Dockerfile with one LABEL instruction for all labels at its end (the final
    image's). One step: the engine's classic builder runs a container for each label that
    a build request passes, about 60 ms apiece."""
    escape = escape_character(dockerfile)
    pairs = " ".join(f"{key}={_quoted(value, escape)}" for key, value in sorted(labels.items()))
    return dockerfile.rstrip("\n") + f"\nLABEL {pairs}\n"


def _quoted(value: str, escape: str) -> str:
    if any(character in value for character in "\r\n"):
        raise SpecError(f"a label value cannot hold a line break: {value!r}")
    for special in (escape, '"', "$"):
        value = value.replace(special, escape + special)
    return f'"{value}"'


def image_name(repo: str, commit: str, spec: BuildSpec) -> str:
    """Derived from the repository, the commit and the spec: the same inputs, the same tag."""
    # The last 40 characters of the URL's path, as a Docker name component: lower-case
    # letters and digits, with single dashes inside, never at either end.
    words = re.sub(r"[^a-z0-9]+", "-", repo.lower().split("://", 1)[-1])[-40:].strip("-")
    slug = words or "repo"
    repo_hash = hashlib.sha256(repo.encode()).hexdigest()[:8]
    return f"binderq-build/{slug}-{repo_hash}:{commit[:12]}-{spec.spec_hash[:12]}"


PROVENANCE_PREFIX = "binderq.build."


def provenance_labels(build: Build, *, instance: str, spec_hash: str = "") -> dict[str, str]:
    """The labels a built image carries: where it came from (repository, commit, the hash
    of the environment spec it was built from), and which binderq made it."""
    labels = {f"{PROVENANCE_PREFIX}repo": build.repo,
              f"{PROVENANCE_PREFIX}commit": build.commit,
              f"{PROVENANCE_PREFIX}id": build.id, "binderq.instance": instance}
    if spec_hash:
        labels[f"{PROVENANCE_PREFIX}spec_hash"] = spec_hash
    return labels


def provenance_of(labels: dict[str, str]) -> dict[str, str]:
    """An image's provenance labels (binderq.build.*), as a staging records them."""
    return {key: value for key, value in labels.items() if key.startswith(PROVENANCE_PREFIX)}


def provenance_source(provenance: dict[str, str]) -> dict[str, str]:
    """What a staging's `source` adds from its image's provenance labels: repo, commit,
    spec_hash and the build's id (as `build`)."""
    names = {"repo": "repo", "commit": "commit", "spec_hash": "spec_hash", "id": "build"}
    return {field: provenance[f"{PROVENANCE_PREFIX}{label}"] for label, field in names.items()
            if f"{PROVENANCE_PREFIX}{label}" in provenance}


# Keys of a staging request that name or size it, or name its build: not staging fields.
_NOT_STAGING_FIELDS = ("name", "pool_size", "build")


def staging_from_build(build: Build, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields of a staging of a built image: the given staging fields (a `name`,
    `pool_size` or `build` among them dropped), the build's image, and its repository and
    commit as the source (a source among fields adds to that, or overrides it)."""
    given = {key: value for key, value in (fields or {}).items()
             if key not in _NOT_STAGING_FIELDS}
    source = {"repo": build.repo, "commit": build.commit, **given.get("source", {})}
    return {**given, "image": build.image, "source": source}


def cache_key(repo: str, commit: str, base_image: str, *, restricted: bool = False) -> str:
    """What makes two build requests the same build. A restricted build (one without a
    token, held to the list of base images) is never the same as an unrestricted one: an
    image built from a base outside the list must not reach a caller without a token from
    the cache, and a token's request must not share a build that the list refuses."""
    text = f"{repo}\n{commit}\n{base_image}" + ("\nrestricted" if restricted else "")
    return hashlib.sha256(text.encode()).hexdigest()


def build_cache_key(build: Build, base_image: str) -> str:
    """The cache key of a build record (see cache_key)."""
    return cache_key(build.repo, build.commit, base_image,
                     restricted=is_restricted(build))


def is_restricted(build: Build) -> bool:
    """Whether the build is held to the operator's list of base images: it was asked for
    by a caller without a token."""
    return is_anonymous_client(build.requested_by)
