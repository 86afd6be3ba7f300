"""Cross-origin access for pages on other sites (Thebe on a journal's or a course's page),
as BinderHub's cors_allow_origin: only the one configured origin, or any with "*"."""

from __future__ import annotations

from flask import Flask, Response, request

ALLOWED_HEADERS = "Authorization, Content-Type"
ALLOWED_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
EXPOSED_HEADERS = "Location, Retry-After, X-Request-Id"


def enable_cors(app: Flask, allow_origin: str) -> None:
    """Answer the configured origin's requests, preflights included, with CORS headers."""
    if not allow_origin:
        return

    @app.after_request
    def add_cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and allow_origin in ("*", origin):
            response.headers["Access-Control-Allow-Origin"] = allow_origin
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        response.vary.add("Origin")
        return response
