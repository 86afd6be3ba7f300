"""Every error the API answers, in the GitHub-style format API.md fixes. Never HTML, never 500
without a JSON body."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from binderq.domain.errors import (
    BinderqError,
    CapacityExceeded,
    Conflict,
    DependencyDown,
    FieldError,
    Forbidden,
    InvalidInput,
    NotFound,
    PoolEmpty,
    QuotaExceeded,
    RepositoryError,
    StaleStaging,
    TooManyBuilds,
    Unauthorized,
)

log = logging.getLogger(__name__)

# One table: which domain error is which status.
STATUS_OF = {
    InvalidInput: 422,
    RepositoryError: 422,
    NotFound: 404,
    Conflict: 409,
    CapacityExceeded: 429,
    TooManyBuilds: 429,
    PoolEmpty: 429,
    QuotaExceeded: 429,
    DependencyDown: 503,
    Unauthorized: 401,
    Forbidden: 403,
    StaleStaging: 409,
}

RESOURCE_OF_BLUEPRINT = {
    "stagings": "Staging",
    "servers": "Server",
    "tasks": "Task",
    "tokens": "Token",
    "pools": "Pool",
    "maintenance": "Reconcile",
    "builds": "Build",
}

# Codes of marshmallow's messages, by how they begin ("Missing data for required field: image,
# or build" is a missing field too).
_CODE_OF_MESSAGE = {
    "Missing data for required field": "missing_field",
    "Unknown field.": "unprocessable",
}


class ErrorDetailSchema(Schema):
    """One problem of an error: which resource, which field, what kind (API.md's codes, and
    `quota_exceeded` or `rate_limited` for a 429)."""

    resource = fields.String(required=True)
    field = fields.String(allow_none=True)
    code = fields.String(required=True, metadata={"description": "missing, missing_field, "
                         "invalid, already_exists, unprocessable, quota_exceeded, "
                         "rate_limited ..."})
    message = fields.String()


class ErrorSchema(Schema):
    """Every error the API answers (API.md): a message, and what was wrong in `errors`."""

    message = fields.String(required=True)
    errors = fields.List(fields.Nested(ErrorDetailSchema))


def error_body(message: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if errors:
        body["errors"] = errors
    return body


def field_errors(resource: str, errors: list[FieldError]) -> list[dict[str, Any]]:
    return [{"resource": resource, "field": error.field, "code": error.code,
             "message": error.message} for error in errors]


def handle_binderq_error(error: BinderqError) -> ResponseReturnValue:
    status = next((code for kind, code in STATUS_OF.items() if isinstance(error, kind)), 500)
    errors = None
    if isinstance(error, InvalidInput):
        errors = field_errors(error.resource, error.errors)
    elif isinstance(error, RepositoryError):
        errors = field_errors(error.resource, [FieldError(error.field, "unprocessable",
                                                          error.message)])
    elif isinstance(error, NotFound):
        errors = [{"resource": error.resource, "code": "missing"}]
    elif isinstance(error, Conflict):
        errors = [{"resource": error.resource, "code": error.code}]
    elif isinstance(error, QuotaExceeded):
        errors = [{"resource": error.resource, "field": error.field, "code": "quota_exceeded"}]
    response = jsonify(error_body(str(error), errors))
    response.status_code = status
    if isinstance(error, (CapacityExceeded, TooManyBuilds, PoolEmpty, QuotaExceeded)):
        response.headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, Unauthorized):
        response.headers["WWW-Authenticate"] = 'token realm="binderq"'
    return response


class PathRefused(HTTPException):
    """A name or id in the path that is not one (api/paths.py), found while the request is
    routed: werkzeug lets only HTTPExceptions through there. Answered as the domain error it
    carries."""

    code = 404

    def __init__(self, error: BinderqError) -> None:
        super().__init__(str(error))
        self.error = error


def handle_path_refused(refused: PathRefused) -> ResponseReturnValue:
    return handle_binderq_error(refused.error)


def handle_http_exception(error: HTTPException) -> ResponseReturnValue:
    """werkzeug's and webargs' errors (400 bad JSON, 404, 405, 413, 422) as JSON."""
    status = error.code or 500
    errors = _validation_errors(getattr(error, "data", None) or {})
    message = {
        400: "Problems parsing JSON",
        413: "Request body too large",
        422: "Validation Failed",
    }.get(status, error.description or error.name)
    if status == 400 and not _is_json_parse_error(error):
        message = error.description or "Bad request"
    response = jsonify(error_body(message, errors))
    response.status_code = status
    if status == 405 and getattr(error, "valid_methods", None):
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def handle_unexpected(error: Exception) -> ResponseReturnValue:
    log.exception("unexpected error while answering a request")
    response = jsonify(error_body("Internal error; the operator's log has the details"))
    response.status_code = 500
    return response


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(BinderqError, handle_binderq_error)
    app.register_error_handler(PathRefused, handle_path_refused)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)


def _is_json_parse_error(error: HTTPException) -> bool:
    messages = (getattr(error, "data", None) or {}).get("messages", {})
    return "json" in messages or error.description is None


def _validation_errors(data: dict[str, Any]) -> list[dict[str, Any]] | None:
    messages = data.get("messages")
    if not isinstance(messages, dict):
        return None
    errors = []
    for location, by_field in messages.items():
        resource = RESOURCE_OF_BLUEPRINT.get(request.blueprint or "", location)
        errors += _flatten(resource, by_field, prefix="")
    return errors or None


def _flatten(resource: str, messages: Any, prefix: str) -> list[dict[str, Any]]:
    if isinstance(messages, dict):
        found = []
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            found += _flatten(resource, value, name)
        return found
    texts = messages if isinstance(messages, list) else [messages]
    if texts and all(isinstance(text, str) for text in texts):
        return [{"resource": resource, "field": prefix or None,
                 "code": _code_of(texts[0]), "message": " ".join(texts)}]
    return [{"resource": resource, "field": prefix or None, "code": "invalid",
             "message": str(messages)}]


def _code_of(message: str) -> str:
    return next((code for start, code in _CODE_OF_MESSAGE.items()
                 if message.startswith(start)), "invalid")
