"""Server-sent events, as every streaming door sends them (a build's log, BinderHub's
build-and-launch stream): the framing, the headers, the keepalive."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Response, stream_with_context

# No caching, and no buffering by a proxy in front (nginx reads X-Accel-Buffering).
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE = ": keepalive\n\n"  # a comment line: keeps proxies from closing a quiet stream


def sse(data: Any, event: str | None = None) -> str:
    """One event: `data:` carries JSON; `event:` names it when the stream has several kinds."""
    named = f"event: {event}\n" if event else ""
    return f"{named}data: {json.dumps(data)}\n\n"


def event_stream(events: Iterator[str]) -> Response:
    """A streamed text/event-stream response that keeps the request context while it runs."""
    return Response(stream_with_context(events), mimetype="text/event-stream",
                    headers=STREAM_HEADERS)
