"""The launch queue's rules: which launches wait for room, when a waiting one is given up,
how long it may wait (its eta), and the refusal of a full queue. Pure.

A launch asked with `?queue=true` that finds the service (BINDERQ_MAX_SERVERS) or its
staging (max_servers) full waits, first come first served, instead of a 429. A client's own
share (client_max_servers) is not room that frees for it: that stays a 429, and a waiting
launch counts against that share (domain/shares.CLIENT_SERVER_STATUSES).
"""

from __future__ import annotations

from dataclasses import dataclass

from binderq.domain.errors import BinderqError, CapacityExceeded, QuotaExceeded

# Promotions the eta is estimated from: at most this many, none older than the window.
ETA_SAMPLES = 20
ETA_WINDOW = 900.0  # seconds
QUEUE_RETRY_AFTER = 30


@dataclass(frozen=True)
class QueuePlace:
    """Where a queued launch stands: 1 is next; eta in seconds, None when unknown."""

    position: int
    eta: int | None


def waits_for_room(refusal: BinderqError) -> bool:
    """Whether a launch refused so may wait in the queue: the service or its staging is
    full (room frees as other servers stop); not a client past its own share."""
    if isinstance(refusal, CapacityExceeded):
        return True
    return isinstance(refusal, QuotaExceeded) and refusal.field == "max_servers"


def is_unpolled(polled_at: float, *, now: float, poll_timeout: float) -> bool:
    """A queued launch nobody asked about for poll_timeout seconds: its asker is gone.
    The promotion script (adapters/redis_store/launch_queue.py) mirrors this."""
    return now - polled_at > poll_timeout


def queue_eta(position: int, promoted_at: list[float], *, now: float) -> int | None:
    """Seconds until a launch at position is served: position times the mean interval
    between the recent promotions (the last ETA_SAMPLES, none older than ETA_WINDOW).
    None with fewer than two: there is no rate to go by, and a guess would be made up."""
    recent = sorted(moment for moment in promoted_at if now - moment <= ETA_WINDOW)
    recent = recent[-ETA_SAMPLES:]
    if len(recent) < 2:
        return None
    interval = (recent[-1] - recent[0]) / (len(recent) - 1)
    return round(position * interval)


def queue_full(limit: int, waiting: int) -> QuotaExceeded:
    return QuotaExceeded(
        resource="Server", field="max_queued", limit=limit, used=waiting,
        retry_after=QUEUE_RETRY_AFTER,
        message=f"the launch queue is full: {waiting} launches wait for room, the most "
                f"allowed (BINDERQ_MAX_QUEUED is {limit}); try again later")
