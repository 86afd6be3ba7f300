"""A body over the limit answers 413, in API.md's format, also through the proxy.

A request is read to its end (up to a bound) before it is answered. Answering a large body
early and leaving it unread makes gunicorn close the connection while configurable-http-proxy
is still sending it (gunicorn drains only 64 KiB of an unread body), and the proxy then
answers 503 instead of relaying the 413 (seen: 2 to 4 of 10 oversized PUTs).
"""

from __future__ import annotations

import time
from typing import IO

from flask import Flask, Response, abort, request

# What is read and thrown away of a body the API does not use (over the limit, or unread
# by the view), at most, and for how long; past either, the connection closes after the
# answer.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0
CHUNK = 64 * 1024


def drain(stream: IO[bytes], limit: int, *, deadline: float) -> bool:
    """Read stream to its end, at most limit bytes and until deadline (time.monotonic);
    True if it ended."""
    read = 0
    while read <= limit and time.monotonic() < deadline:
        chunk = stream.read(CHUNK)
        if not chunk:
            return True
        read += len(chunk)
    return False


def enable_body_limit(app: Flask, max_bytes: int) -> None:
    """Refuse bodies over max_bytes with 413 before any view runs, and read to its end any
    body a request leaves unread, so that every answer reaches the client whole."""

    @app.before_request
    def refuse_large_bodies() -> None:
        length = request.content_length
        if length is not None and length > max_bytes:
            _drain_request()
            abort(413)

    @app.after_request
    def drain_unread_body(response: Response) -> Response:
        if not _drain_request():
            response.headers["Connection"] = "close"
        return response


def _drain_request() -> bool:
    """Read what is left of this request's body (once); False if it did not end."""
    if "binderq.drained" not in request.environ:
        stream = request.environ.get("wsgi.input")
        ended = stream is None or drain(stream, DRAIN_BYTES,
                                        deadline=time.monotonic() + DRAIN_SECONDS)
        request.environ["binderq.drained"] = ended
    return request.environ["binderq.drained"]
