"""Staging tasks: thin wrappers that take names and versions, and re-read state."""

from __future__ import annotations

from celery import shared_task

from binderq.services import stagings
from binderq.services.images import uses_registry
from binderq.tasks import STAGE
from binderq.workers.app import task_options
from binderq.workers.context import worker_context


@shared_task(**task_options(STAGE))
def stage(name: str, version: int) -> str | None:
    """Check a staging's images on the engine and mark it ready or failed."""
    context = worker_context()
    settings = context.settings
    staging = stagings.stage(name, version, store=context.store, runtime=context.runtime,
                             queue=context.queue,
                             registry=settings.registry if uses_registry(settings) else "",
                             host=settings.host().name)
    return str(staging.status) if staging else None
