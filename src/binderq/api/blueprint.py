"""flask-smorest's Blueprint, with the two things every binderq operation declares in the
OpenAPI document: which errors it answers (each in API.md's format) and who may call it."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import flask_smorest

from binderq.api.errors import ErrorSchema

RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before asking again",
                               "required": True, "schema": {"type": "integer"}}}
WHY = {
    400: "Malformed JSON",
    401: "No token, or a bad one (where one is needed, or was given)",
    403: "The token may not do this (its scopes, or not the operator's)",
    404: "No such resource",
    409: "Conflict with the resource's state",
    413: "Request body too large",
    422: "Validation failed: `errors` names each field",
    429: "A limit (capacity, a fair share, a rate): the message names it; see Retry-After",
    503: "A dependency (Redis, Docker, the proxy) is down",
}

# Security requirements (components.securitySchemes in api/__init__.py).
TOKEN = {"token": []}
ANYONE: list[dict[str, list[str]]] = []  # no token needed, nor looked at
OPTIONAL_TOKEN = [{}, TOKEN]  # e.g. a public staging under open launch auth


class Blueprint(flask_smorest.Blueprint):
    def errors(self, *statuses: int) -> Callable[[Any], Any]:
        """Document the errors an operation answers, each with ErrorSchema's body."""
        def decorate(view: Any) -> Any:
            for status in statuses:
                view = self.alt_response(status, schema=ErrorSchema, description=WHY.get(
                    status, HTTPStatus(status).phrase),
                    headers=RETRY_AFTER if status == 429 else None)(view)
            return view
        return decorate

    def security(self, requirements: list[dict[str, list[str]]]) -> Callable[[Any], Any]:
        """Who may call the operation, if not only token holders (the API's default)."""
        return self.doc(security=requirements)
