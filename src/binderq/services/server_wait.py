"""A client waits for its server's next status instead of polling for it:
GET /api/servers/{id}?wait=N answers as soon as a queued, pending, starting or stopping
server's status changes, or after N seconds with the server as it is.

Reason to change: how a client waits for a launch (or a stop) to move on.

Thirty students polling twenty times a second is six hundred requests a second through the
proxy and the API on the machine their notebooks boot on; thirty waiting requests are thirty
threads asking Redis for one field. Each waiting request holds an API thread, so a process
lets at most `Waiters.most` wait at once; the rest are answered at once, told to retry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from binderq.adapters.redis_store import RedisStore
from binderq.domain.errors import NotFound
from binderq.domain.models import Server, ServerStatus

# Statuses a server leaves by itself: waiting on them ends. Ready, failed and stopped stay.
ON_ITS_WAY = frozenset({ServerStatus.QUEUED, ServerStatus.PENDING, ServerStatus.STARTING,
                        ServerStatus.STOPPING})
MAX_WAIT = 30.0  # seconds one request may wait
CHECK_EVERY = 0.05  # seconds between looks at its status (one HGET)


class Waiters:
    """How many requests of this process may wait at once (each holds an API thread)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._places = threading.BoundedSemaphore(most)

    def try_enter(self) -> bool:
        return self._places.acquire(blocking=False)

    def leave(self) -> None:
        self._places.release()


def longest_wait(asked: float, *, queue_poll_timeout: float) -> float:
    """Seconds a request may wait: what it asked, at most MAX_WAIT, and at most half the
    launch queue's poll timeout, so a queued server waited on is never dropped as unpolled
    (the request counts as a poll when it starts and when it answers)."""
    return max(0.0, min(asked, MAX_WAIT, queue_poll_timeout / 2))


def wait_for_next_status(server: Server, *, store: RedisStore, seconds: float,
                         clock: Callable[[], float] = time.monotonic,
                         sleep: Callable[[float], None] = time.sleep) -> Server:
    """The server once its status is no longer server.status, or after seconds; at once
    when that status is not one a server leaves by itself."""
    if server.status not in ON_ITS_WAY:
        return server
    deadline = clock() + seconds
    while clock() < deadline:
        sleep(min(CHECK_EVERY, max(0.0, deadline - clock())))
        status = store.servers.status_of(server.id)
        if status is None:
            raise NotFound("Server", server.id)
        if status != server.status:
            break
    now = store.servers.get(server.id)
    if now is None:
        raise NotFound("Server", server.id)
    return now
