"""A Jupyter notebook's {base_url}api/status: its readiness (adapters/readiness.py) and its
last activity (culling). A notebook is user code: whatever it answers, or however slowly,
a probe ends in time with a status or None."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import requests
import urllib3.exceptions

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
        with requests.get(f"{base}api/status", stream=True,
                          timeout=(timeout, min(READ_GAP, timeout)),
                          headers={"Authorization": f"token {token}"}) as response:
            if response.status_code != 200:
                return None
            body = _read_by(response, deadline)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        return None  # reading the raw body raises urllib3's errors, not requests'
    return _json_object(body) if body is not None else None


def _read_by(response: requests.Response, deadline: float) -> bytes | None:
    """The whole body if it arrives by deadline and within STATUS_MAX_BYTES, else None."""
    body = b""
    while time.monotonic() < deadline:
        chunk = response.raw.read1(STATUS_MAX_BYTES, decode_content=True)
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
