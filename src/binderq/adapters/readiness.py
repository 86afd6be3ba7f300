"""Readiness probes: a server is ready when it answers its staging's probe
(domain/applications.Probe): Jupyter's api/status, a GET of a path, or a TCP connection."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from binderq.adapters.notebook_probe import answer_to_get, notebook_status
from binderq.domain.applications import JUPYTER_STATUS, Probe
from binderq.domain.errors import LaunchFailed

POLL_INTERVAL = 0.05
# Seconds between asks to Docker whether the container still runs (an inspect): a crashed
# notebook is noticed this late at most. Every 10 polls (0.5 s) cost thirty launches at
# once about 1,500 inspects, CPU the booting notebooks were waiting for.
LIVENESS_INTERVAL = 2.0
# How long an accepted connection must stay open to count. The engine's port publisher
# (docker-proxy) accepts at once and closes when nothing listens in the container.
TCP_HOLD = 0.25


def http_answers(base: str, path: str, token: str, timeout: float = 2.0) -> bool:
    """Whether GET {base}{path} answers 2xx or 3xx (redirects not followed). The server's
    token goes along, for apps that check it on every path."""
    try:
        with answer_to_get(base, path, token, timeout) as response:
            return 200 <= response.status < 400
    except (OSError, http.client.HTTPException):
        return False


def tcp_answers(base: str, timeout: float = 2.0) -> bool:
    """Whether base's host and port accept a connection and keep it open for TCP_HOLD
    seconds (or send something meanwhile)."""
    address = urlsplit(base)
    try:
        with socket.create_connection((address.hostname, address.port or 80),
                                      timeout=timeout) as connection:
            connection.settimeout(TCP_HOLD)
            try:
                return connection.recv(1) != b""
            except TimeoutError:
                return True  # open and silent, as an HTTP server waiting for a request is
    except OSError:
        return False


def probe_once(base: str, token: str, check: Probe, timeout: float = 2.0) -> dict | None:
    """What the server answers check now (a dict, the notebook's status for Jupyter's), or
    None while it does not."""
    if check.jupyter:
        return notebook_status(base, token, timeout=timeout)
    if check.http is not None:
        return {} if http_answers(base, check.http, token, timeout) else None
    return {} if tcp_answers(base, timeout) else None


def wait_until_ready(base: str, token: str, *, timeout: float,
                     still_running: Callable[[], str | None],
                     check: Probe = JUPYTER_STATUS) -> dict[str, Any]:
    """Poll check until the server at base answers it; LaunchFailed if its container stops
    first or it takes longer than timeout. still_running answers None while the container
    runs, else why it stopped."""
    deadline = time.monotonic() + timeout
    next_liveness = time.monotonic() + LIVENESS_INTERVAL
    what = "the notebook" if check.jupyter else "the server"
    while time.monotonic() < deadline:
        answer = probe_once(base, token, check, timeout=min(2.0, timeout))
        if answer is not None:
            return answer
        if time.monotonic() >= next_liveness:
            next_liveness = time.monotonic() + LIVENESS_INTERVAL
            stopped = still_running()
            if stopped:
                raise LaunchFailed(f"the server's container stopped before {what} answered "
                                   f"its readiness probe ({check.describe()}): {stopped}")
        time.sleep(POLL_INTERVAL)
    raise LaunchFailed(f"{what} did not answer its readiness probe ({check.describe()}) "
                       f"within {timeout:g} s")
