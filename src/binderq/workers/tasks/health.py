"""The worker canary: proves a worker consumes its queue, and reports on Docker."""

from __future__ import annotations

from celery import shared_task

from binderq.services.health import check_docker
from binderq.workers.app import time_limits
from binderq.workers.context import worker_context

NAME = "binderq.health.ping"


@shared_task(name=NAME, **time_limits(NAME), acks_late=False)
def ping() -> dict:
    """Answer from a real worker process, with what that worker sees of the Docker engine."""
    return {"docker": check_docker(worker_context().runtime)}
