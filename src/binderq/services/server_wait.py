"""A client waits for its server's next status instead of polling for it:
GET /api/servers/{id}?wait=N answers as soon as a queued, pending, starting or stopping
server's status changes, or after N seconds with the server as it is.

Reason to change: how a client waits for a launch (or a stop) to move on.

Thirty students polling twenty times a second is six hundred requests a second through the
proxy and the API on the machine their notebooks boot on; thirty waiting requests are thirty
subscriptions that hear the change the moment a script makes it. Each waiting request holds
an API thread (and a Redis connection), so a process lets only so many wait at once
(api/servers.WAITERS); the rest are answered at once, told to retry.
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
# Seconds between looks at its status (one HGET) when no change is heard: the scripts that
# change a status publish it (redis_store Keys.SERVER_STATUS_CHANNEL), so a waiting request
# wakes at once; the look is for changes written otherwise (an adoption, a hand edit).
LOOK_EVERY = 0.5


class Waiters:
    """How many requests of this process may wait at once (each holds an API thread)."""

    def __init__(self, most: int) -> None:
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
                         clock: Callable[[], float] = time.monotonic) -> Server:
    """The server once its status is no longer server.status, or after seconds; at once
    when that status is not one a server leaves by itself."""
    if server.status not in ON_ITS_WAY:
        return server
    deadline = clock() + seconds
    changes = store.servers.status_changes(server.id)
    try:
        while True:
            # Looked at after subscribing: a change just before it is not missed.
            status = store.servers.status_of(server.id)
            if status is None:
                raise NotFound("Server", server.id)
            left = deadline - clock()
            if status != server.status or left <= 0:
                break
            changes.get_message(timeout=min(LOOK_EVERY, left))
    finally:
        changes.close()
    now = store.servers.get(server.id)
    if now is None:
        raise NotFound("Server", server.id)
    return now
