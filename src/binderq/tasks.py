"""The table of binderq's tasks: each task's name, queue, time limits and retries, once.

Reason to change: a task is added, renamed, moved to another queue or given other limits.

It lives at the top of the package, beside settings.py, because every layer reads it: the
services and the API enqueue by these names, the enqueue client sends by them, and the Celery
app (workers/app.py) derives its routes, limits, task options and beat entries from it. It is
not a domain rule (no decision about servers or pools) and it speaks no Celery, so services
import it without importing Celery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from binderq.domain.errors import DependencyDown
from binderq.domain.hosts import host_queue
from binderq.settings import Settings

# Not a queue itself: each Docker host has its own, launches.<host> (domain/hosts.host_queue),
# served by workers that own that host's engine.
LAUNCHES = "launches"
BUILDS = "builds"
MAINTENANCE = "maintenance"


@dataclass(frozen=True)
class TimeLimits:
    """Seconds a task may run: at `soft` it is told to clean up, at `hard` it is killed."""

    soft: int
    hard: int


@dataclass(frozen=True)
class RetryPolicy:
    """Retry on `retry_on` errors, backing off exponentially, at most `max_retries` times."""

    backoff: int
    backoff_max: int
    max_retries: int
    retry_on: tuple[type[Exception], ...] = (DependencyDown,)


@dataclass(frozen=True)
class TaskSpec:
    """One task: its dotted name, the queue it runs on, its limits, retries and acking."""

    name: str
    queue: str
    limits: TimeLimits | Callable[[Settings], TimeLimits]
    retry: RetryPolicy | None = None
    # Acked after it ran, so that a worker lost mid-task hands it on (tasks are idempotent).
    acks_late: bool = True

    def time_limits(self, settings: Settings) -> TimeLimits:
        """This task's limits under these settings."""
        return self.limits(settings) if callable(self.limits) else self.limits


BUILD_GRACE = 60  # seconds between a build's soft limit and its hard one


def build_limits(settings: Settings) -> TimeLimits:
    """Soft: BINDERQ_BUILD_TIMEOUT, which ends the build `failed`; hard: the grace later."""
    soft = int(settings.build_timeout)
    return TimeLimits(soft=soft, hard=soft + BUILD_GRACE)


STAGE = TaskSpec("binderq.stagings.stage", LAUNCHES, TimeLimits(soft=108, hard=120),
                 RetryPolicy(backoff=2, backoff_max=30, max_retries=5))
LAUNCH = TaskSpec("binderq.servers.launch", LAUNCHES, TimeLimits(soft=270, hard=300))
STOP = TaskSpec("binderq.servers.stop", LAUNCHES, TimeLimits(soft=108, hard=120),
                RetryPolicy(backoff=2, backoff_max=60, max_retries=20))
# The canary answers a health check now or never: a redelivered ping has no one to answer.
HEALTH_PING = TaskSpec("binderq.health.ping", LAUNCHES, TimeLimits(soft=27, hard=30),
                       acks_late=False)
REPLENISH = TaskSpec("binderq.pools.replenish", MAINTENANCE, TimeLimits(soft=54, hard=60),
                     RetryPolicy(backoff=2, backoff_max=30, max_retries=5))
UPKEEP = TaskSpec("binderq.pools.upkeep", MAINTENANCE, TimeLimits(soft=108, hard=120))
CULL = TaskSpec("binderq.maintenance.cull", MAINTENANCE, TimeLimits(soft=108, hard=120))
RECONCILE = TaskSpec("binderq.maintenance.reconcile", MAINTENANCE,
                     TimeLimits(soft=108, hard=120))
BUILD = TaskSpec("binderq.builds.build", BUILDS, build_limits)
# Removes images and door-made stagings past BINDERQ_BUILD_TTL (services/collect.py).
COLLECT = TaskSpec("binderq.maintenance.collect", MAINTENANCE, TimeLimits(soft=540, hard=600))

TASKS: tuple[TaskSpec, ...] = (STAGE, LAUNCH, STOP, HEALTH_PING, REPLENISH, UPKEEP, CULL,
                               RECONCILE, BUILD, COLLECT)
# Tasks that run on a host's queue: a server's launch and stop on its host's, by the server's
# record (adapters/task_queue.py); staging and the canary on the first host's (where builds
# run and stagings find their images), unless sent elsewhere.
SERVER_TASKS = frozenset({LAUNCH.name, STOP.name})


def queue_of(spec: TaskSpec, settings: Settings) -> str:
    """The queue a task goes to when nothing chooses a host: the first host's for host work."""
    return host_queue(settings.host().name) if spec.queue == LAUNCHES else spec.queue


def queues(settings: Settings) -> tuple[str, ...]:
    """Every queue some worker consumes under these settings: each host's, builds, maintenance."""
    return (*(host.queue for host in settings.hosts), BUILDS, MAINTENANCE)


QUEUES: tuple[str, ...] = queues(Settings())

