"""What a staging may contain: image references, volume names, services, env names, targets.
One rule, applied twice: the API checks a PUT against it (api/stagings.py builds its schema
from these patterns), and a launch worker checks the staging it read from Redis against it
again before it creates any container, so a record written into Redis by anything else
never mounts a host path or runs an image reference Docker would read as something else."""

from __future__ import annotations

import re
from typing import Any

from binderq.domain.applications import KINDS, unchecked_token_problem
from binderq.domain.errors import FieldError, InvalidInput
from binderq.domain.models import Staging

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
# A named Docker volume: no '/', no leading '.' or '~', so never a host path (Docker binds a
# source that looks like a path).
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$")
# A readiness probe's path under the server's base_url: relative, no "..".
PROBE_PATH = re.compile(r"^(?!/)(?!.*\.\.)[A-Za-z0-9._~!$&'()*+,;=:@/?%-]{0,512}$")
MAX_SERVICES = 5
MAX_DATA = 10
MAX_ENV = 100
MAX_TARGET = 1024

IMAGE_HELP = "not an image reference such as binderq/notebook:bookworm"
VOLUME_HELP = "a Docker volume name (host paths are not allowed)"
SERVICE_HELP = "a lower-case DNS label such as postgres"
TARGET_HELP = "an absolute path in the container, not /"


def is_image(value: Any) -> bool:
    return isinstance(value, str) and bool(IMAGE.match(value))


def is_volume_name(value: Any) -> bool:
    return isinstance(value, str) and bool(VOLUME_NAME.match(value))


def is_target(value: Any) -> bool:
    """An absolute path in the container other than / itself."""
    return (isinstance(value, str) and value.startswith("/") and value != "/"
            and "\0" not in value and len(value) <= MAX_TARGET)


def staging_problems(staging: Staging) -> list[FieldError]:
    """Every way staging breaks the rules (empty when it is fine to run)."""
    problems = []
    if not is_image(staging.image):
        problems.append(FieldError("image", "invalid", IMAGE_HELP))
    problems += _env_problems("env", staging.env)
    problems += _application_problems(staging)
    problems += _service_problems(staging.services)
    if not isinstance(staging.data, list) or len(staging.data) > MAX_DATA:
        problems.append(FieldError("data", "invalid", f"at most {MAX_DATA} volumes"))
    else:
        for index, volume in enumerate(staging.data):
            if not is_volume_name(volume.volume):
                problems.append(FieldError(f"data.{index}.volume", "invalid", VOLUME_HELP))
            if not is_target(volume.target):
                problems.append(FieldError(f"data.{index}.target", "invalid", TARGET_HELP))
            if not isinstance(volume.read_only, bool):
                problems.append(FieldError(f"data.{index}.read_only", "invalid", "a boolean"))
    if not isinstance(staging.port, int) or not 1 <= staging.port <= 65535:
        problems.append(FieldError("port", "invalid", "a port between 1 and 65535"))
    return problems


def check_staging(staging: Staging) -> None:
    """InvalidInput naming every field of staging that breaks the rules."""
    problems = staging_problems(staging)
    if problems:
        raise InvalidInput("Staging", errors=problems, message=refusal(problems))


def refusal(problems: list[FieldError]) -> str:
    """Why a staging is refused, in one line (a staging's or a failed server's error)."""
    return "refused: the staging breaks the rules (" + "; ".join(
        f"{problem.field}: {problem.message}" for problem in problems) + "); PUT it again"


def _service_problems(services: Any) -> list[FieldError]:
    if not isinstance(services, list) or len(services) > MAX_SERVICES:
        return [FieldError("services", "invalid", f"at most {MAX_SERVICES} services")]
    problems = []
    for index, service in enumerate(services):
        if not (isinstance(service.name, str) and SERVICE_NAME.match(service.name)):
            problems.append(FieldError(f"services.{index}.name", "invalid", SERVICE_HELP))
        if not is_image(service.image):
            problems.append(FieldError(f"services.{index}.image", "invalid", IMAGE_HELP))
        problems += _env_problems(f"services.{index}.env", service.env)
    names = [service.name for service in services]
    if len(set(map(str, names))) != len(names):
        problems.append(FieldError("services", "invalid", "service names must be unique"))
    return problems


def _env_problems(field: str, env: Any) -> list[FieldError]:
    if not isinstance(env, dict) or len(env) > MAX_ENV:
        return [FieldError(field, "invalid", f"at most {MAX_ENV} variables")]
    bad = [name for name, value in env.items() if not isinstance(name, str)
           or not ENV_NAME.match(name) or not isinstance(value, str)]
    return [FieldError(field, "invalid", f"bad variable {name!r}") for name in bad]


def _application_problems(staging: Staging) -> list[FieldError]:
    problems = []
    if staging.kind not in KINDS:
        problems.append(FieldError("kind", "invalid", f"one of {', '.join(KINDS)}"))
    probe = staging.probe or {}
    http = probe.get("http") if isinstance(probe, dict) else None
    if not isinstance(probe, dict) or (http is not None and not (
            isinstance(http, str) and PROBE_PATH.match(http))):
        problems.append(FieldError("probe", "invalid",
                                   'a path under base_url ({"http": "index.html"}) or '
                                   '{"tcp": true}'))
    unchecked = unchecked_token_problem(staging.kind, staging.command,
                                        staging.public_url_is_secret)
    if unchecked:
        problems.append(FieldError("public_url_is_secret", "invalid", unchecked))
    return problems
