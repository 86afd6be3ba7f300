"""The names and ids in paths: one pattern each, checked at the edge (before any Redis key is
made of them: `GET /api/builds/<id>:log` once read the log stream as a build record and
answered 500) and declared, the same pattern, in the OpenAPI document.

Each kind is a werkzeug converter (`/api/builds/<build_id:build_id>`). A value that does
not match is refused while the request is routed, before any view, limit or store runs:
a staging name with 422 naming the field (API.md: validation), an id with 404 (no such
resource can exist).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask_smorest import Api
from werkzeug.routing import BaseConverter

from binderq.api.errors import PathRefused
from binderq.domain.errors import BinderqError, FieldError, InvalidInput, NotFound
from binderq.domain.staging_rules import NAME
from binderq.services.tokens import TOKEN_ID_LENGTH

HEX_ID = re.compile(r"^[0-9a-f]{1,64}$")  # build and server ids: secrets.token_hex
TOKEN_ID = re.compile(rf"^[0-9a-f]{{{TOKEN_ID_LENGTH}}}$")
TASK_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")  # Celery's: a uuid4
NAME_HELP = "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"


@dataclass(frozen=True)
class PathPart:
    """One kind of name or id in a path, and how a value that is not one is refused."""

    converter: str
    resource: str
    pattern: re.Pattern[str]
    description: str
    field: str | None = None  # refused as invalid input naming it (422); None: 404

    def refusal(self, value: str) -> BinderqError:
        if self.field:
            return InvalidInput(self.resource, errors=[FieldError(self.field, "invalid",
                                                                  self.description)])
        return NotFound(self.resource, value)

    def parameter_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": self.pattern.pattern,
                "description": self.description}


STAGING_NAME = PathPart("staging_name", "Staging", NAME, NAME_HELP, field="name")
BUILD_ID = PathPart("build_id", "Build", HEX_ID, "a build id: hex digits")
SERVER_ID = PathPart("server_id", "Server", HEX_ID, "a server id: hex digits")
TOKEN = PathPart("token_id", "Token", TOKEN_ID, f"a token id: {TOKEN_ID_LENGTH} hex digits")
TASK = PathPart("task_id", "Task", TASK_ID, "a task id (a uuid)")
PATH_PARTS = (STAGING_NAME, BUILD_ID, SERVER_ID, TOKEN, TASK)


def _converter(part: PathPart) -> type[BaseConverter]:
    # One path segment each: /api/stagings/a/b is no resource (404), and PUT
    # /api/stagings/x/servers is a method that path does not allow (405).
    def to_python(self: BaseConverter, value: str) -> str:
        if not part.pattern.match(value):
            raise PathRefused(part.refusal(value))
        return value

    return type(f"{part.converter.title().replace('_', '')}Converter", (BaseConverter,),
                {"to_python": to_python, "path_part": part})


def register_path_parts(app: Flask, api: Api) -> None:
    """Each kind's converter, in the app's routing and in the OpenAPI document (call before
    the blueprints are registered)."""
    for part in PATH_PARTS:
        converter = _converter(part)
        app.url_map.converters[part.converter] = converter
        api.register_converter(converter, lambda conv: conv.path_part.parameter_schema())
