"""Staging tasks: thin wrappers that take names and versions, and re-read state."""

from __future__ import annotations

from celery import shared_task

from binderq.domain.errors import DependencyDown
from binderq.services import stagings
from binderq.workers.app import time_limits
from binderq.workers.context import worker_context

NAME = "binderq.stagings.stage"


@shared_task(name=NAME, **time_limits(NAME), autoretry_for=(DependencyDown,),
             retry_backoff=2, retry_backoff_max=30, max_retries=5)
def stage(name: str, version: int) -> str | None:
    """Check a staging's images on the engine and mark it ready or failed."""
    context = worker_context()
    staging = stagings.stage(name, version, store=context.store, runtime=context.runtime,
                             queue=context.queue)
    return str(staging.status) if staging else None
