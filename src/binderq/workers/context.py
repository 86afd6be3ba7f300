"""The adapters a worker process uses, built once per process from its app's Settings."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

from binderq.adapters.chp_proxy import ChpProxy
from binderq.adapters.docker_builder import DockerBuilder
from binderq.adapters.docker_runtime import DockerRuntime
from binderq.adapters.readiness import wait_until_ready
from binderq.adapters.redis_store import RedisStore
from binderq.adapters.task_queue import CeleryTaskQueue
from binderq.bootstrap import build_builder, build_proxy, build_runtime, build_store
from binderq.settings import Settings
from binderq.workers.app import settings_of


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    store: RedisStore
    runtime: DockerRuntime
    builder: DockerBuilder
    proxy: ChpProxy
    queue: CeleryTaskQueue

    @property
    def probe(self):
        return wait_until_ready


_made = threading.Lock()


def worker_context() -> WorkerContext:
    """Built once, lazily, inside the worker process (after fork, where there is one), from
    the Settings its Celery app was made from; a launch worker's threads share it."""
    with _made:
        return _worker_context()


@functools.cache
def _worker_context() -> WorkerContext:
    from celery import current_app

    # Its own host's engine (BINDERQ_WORKER_HOST; else the first host's: builds run there).
    settings = settings_of(current_app)
    settings = settings.with_changes(docker_host=settings.host().url)
    store = build_store(settings)
    return WorkerContext(
        settings=settings,
        store=store,
        runtime=build_runtime(settings),
        builder=build_builder(settings),
        proxy=build_proxy(settings),
        queue=CeleryTaskQueue(current_app, store),
    )
