"""Readiness probe: a server is ready when its notebook answers {base_url}api/status."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests

from binderq.domain.errors import LaunchFailed
from binderq.domain.models import parse_time

POLL_INTERVAL = 0.05
LIVENESS_EVERY = 10  # polls between asks to Docker whether the container still runs


def notebook_status(base: str, token: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The notebook's api/status answer, or None while it does not answer 200."""
    try:
        response = requests.get(f"{base}api/status", timeout=timeout,
                                headers={"Authorization": f"token {token}"})
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def last_activity(status: dict[str, Any]) -> datetime | None:
    return parse_time(status.get("last_activity"))


def wait_for_notebook(base: str, token: str, *, timeout: float,
                      still_running: Callable[[], str | None]) -> dict[str, Any]:
    """Poll until the notebook at base answers; LaunchFailed if it stops or takes too long.

    still_running answers None while the container runs, else why it stopped.
    """
    deadline = time.monotonic() + timeout
    polls = 0
    while time.monotonic() < deadline:
        status = notebook_status(base, token, timeout=min(2.0, timeout))
        if status is not None:
            return status
        polls += 1
        if polls % LIVENESS_EVERY == 0:
            stopped = still_running()
            if stopped:
                raise LaunchFailed(f"the server's container stopped before the notebook "
                                   f"answered: {stopped}")
        time.sleep(POLL_INTERVAL)
    raise LaunchFailed(f"the notebook did not answer within {timeout:g} s")
