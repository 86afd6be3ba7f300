"""A Jupyter notebook's {base_url}api/status: its readiness (adapters/readiness.py) and its
last activity (culling). A notebook is user code: whatever it answers, or however slowly,
a probe ends in time with a status or None."""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from binderq.domain.models import parse_time

# The most of an answer a probe reads: api/status is about 150 bytes.
STATUS_MAX_BYTES = 64 * 1024
# Seconds one read may wait for the next bytes; the probe's deadline is checked between reads.
READ_GAP = 1.0


def notebook_status(base: str, token: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The notebook's api/status answer, or None unless it answers 200 with a JSON object
    within timeout seconds in all (connecting and reading: one that trickles its answer is
    cut off, within READ_GAP after the deadline) and STATUS_MAX_BYTES."""
    deadline = time.monotonic() + timeout
    try:
        with answer_to_get(base, "api/status", token, timeout) as response:
            if response.status != 200:
                return None
            body = _read_by(response, deadline)
    except (OSError, http.client.HTTPException):
        return None
    return _json_object(body) if body is not None else None


@contextlib.contextmanager
def answer_to_get(base: str, path: str, token: str,
                  timeout: float) -> Iterator[http.client.HTTPResponse]:
    """GET {base}{path} with the server's token; its answer, unread (redirects not followed).

    The standard library's client, not requests: a launch probes twenty times a second
    until its server answers, and thirty launches at once spent most of their worker's CPU
    in requests' per-call work (a session, the environment's proxies, ~/.netrc). Nor may a
    proxy named in the environment stand between binderq and a published port. Connecting
    and each read wait at most READ_GAP (or timeout, if shorter)."""
    address = urlsplit(base)
    connection_class = (http.client.HTTPSConnection if address.scheme == "https"
                        else http.client.HTTPConnection)
    connection = connection_class(address.hostname, address.port,
                                  timeout=min(READ_GAP, timeout))
    try:
        connection.request("GET", f"{address.path or '/'}{path}",
                           headers={"Authorization": f"token {token}"})
        yield connection.getresponse()
    finally:
        connection.close()


def _read_by(response: http.client.HTTPResponse, deadline: float) -> bytes | None:
    """The whole body if it arrives by deadline and within STATUS_MAX_BYTES, else None."""
    body = b""
    while time.monotonic() < deadline:
        chunk = response.read1(STATUS_MAX_BYTES)
        if not chunk:
            return body
        body += chunk
        if len(body) > STATUS_MAX_BYTES:
            return None
    return None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        return None
    return answer if isinstance(answer, dict) else None


def last_activity(status: dict[str, Any]) -> datetime | None:
    """The notebook's last_activity as an aware time, or None if it says none or nonsense
    (not a string, not a time). The culler clamps it to now: it may still lie."""
    value = status.get("last_activity")
    if not isinstance(value, str):
        return None
    try:
        moment = parse_time(value)
    except ValueError:
        return None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # Jupyter's are UTC
    return moment
