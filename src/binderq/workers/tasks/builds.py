"""The build task, on the builds queue's dedicated workers."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from binderq.bootstrap import build_git
from binderq.services import builds
from binderq.tasks import BUILD
from binderq.workers.app import task_options
from binderq.workers.context import worker_context


@shared_task(**task_options(BUILD))
def build(build_id: str) -> str | None:
    """Fetch, build and (if asked) stage one build; every failure ends it `failed`."""
    context = worker_context()
    try:
        done = builds.run_build(build_id, store=context.store,
                                git=build_git(context.settings), builder=context.builder,
                                queue=context.queue, settings=context.settings)
    except SoftTimeLimitExceeded:
        # Raised wherever the build was, a silent step included; leaving it closed the
        # connection to dockerd, which abandons the build.
        limit = context.settings.build_timeout
        done = builds.fail_build(build_id, f"the build exceeded its time limit of {limit:g} s",
                                 store=context.store, settings=context.settings)
    return str(done.status) if done else None
