"""The build task, on the builds queue's dedicated workers."""

from __future__ import annotations

from celery import shared_task

from binderq.bootstrap import build_git
from binderq.services import builds
from binderq.workers.app import time_limits
from binderq.workers.context import worker_context

NAME = "binderq.builds.build"


@shared_task(name=NAME, **time_limits(NAME))
def build(build_id: str) -> str | None:
    """Fetch, build and (if asked) stage one build; every failure ends it `failed`."""
    context = worker_context()
    done = builds.run_build(build_id, store=context.store, git=build_git(context.settings),
                            runtime=context.runtime, queue=context.queue,
                            settings=context.settings)
    return str(done.status) if done else None
