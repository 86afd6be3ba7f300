"""The worker canary: proves a worker consumes its queue, and reports on Docker."""

from __future__ import annotations

from celery import shared_task

from binderq.services.health import check_docker
from binderq.tasks import HEALTH_PING
from binderq.workers.app import task_options
from binderq.workers.context import worker_context


@shared_task(**task_options(HEALTH_PING))
def ping() -> dict:
    """Answer from a real worker process, with what that worker sees of the Docker engine."""
    return {"docker": check_docker(worker_context().runtime)}
