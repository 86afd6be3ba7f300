"""The Celery app, configured from Settings and the task table so that no work is lost or
done twice.

Reason to change: how binderq's tasks are run by Celery (acking, routes, limits, schedule).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from binderq.settings import Settings
from binderq.tasks import (
    COLLECT,
    CULL,
    MAINTENANCE,
    RECONCILE,
    TASKS,
    UPKEEP,
    TaskSpec,
    queue_of,
)
from binderq.workers import heartbeat  # noqa: F401  (a launch worker proves its host's life)
from binderq.workers.logs import install_task_logging

# Celery's own tasks (chords and the like), which the table does not list, get these.
DEFAULT_TIME_LIMIT = 300
DEFAULT_SOFT_TIME_LIMIT = 270

TASK_MODULES = [
    "binderq.workers.tasks.stagings",
    "binderq.workers.tasks.servers",
    "binderq.workers.tasks.health",
    "binderq.workers.tasks.pools",
    "binderq.workers.tasks.maintenance",
    "binderq.workers.tasks.builds",
]

POOL_UPKEEP_INTERVAL = 5.0


def task_options(spec: TaskSpec) -> dict[str, Any]:
    """The options of a task's decorator: its name, acking and retries, from the table.

    Its time limits depend on the settings, so make_celery sets them (as annotations).
    """
    options: dict[str, Any] = {"name": spec.name, "acks_late": spec.acks_late}
    if spec.retry:
        options.update(autoretry_for=spec.retry.retry_on, retry_backoff=spec.retry.backoff,
                       retry_backoff_max=spec.retry.backoff_max,
                       max_retries=spec.retry.max_retries)
    return options


def task_routes(settings: Settings) -> dict[str, dict[str, str]]:
    """Each task's queue, as the table says; host work not sent to a host goes to the first
    (the task queue adapter sends a server's launch and stop to its own host's queue)."""
    return {spec.name: {"queue": queue_of(spec, settings)} for spec in TASKS}


def task_time_limits(settings: Settings) -> dict[str, dict[str, int]]:
    """Each task's hard and soft time limits; the soft one lets it clean up first."""
    limits = {spec.name: spec.time_limits(settings) for spec in TASKS}
    return {name: {"time_limit": limit.hard, "soft_time_limit": limit.soft}
            for name, limit in limits.items()}


def visibility_timeout(settings: Settings) -> int:
    """Seconds after which a message a worker took but never acked is handed out again.

    It must exceed every time limit: else a slow task would be run a second time while it runs.
    """
    longest = max(spec.time_limits(settings).hard for spec in TASKS)
    return 2 * max(DEFAULT_TIME_LIMIT, longest)


def beat_schedule(settings: Settings) -> dict[str, dict]:
    """What celery beat (exactly one) sends, and how often, in seconds."""
    every = {
        UPKEEP.name: POOL_UPKEEP_INTERVAL,
        CULL.name: settings.cull_interval,
        RECONCILE.name: settings.reconcile_interval,
        COLLECT.name: settings.collect_interval,
    }
    # A run that waited longer than its interval is superseded by the next one.
    return {name: {"task": name, "schedule": seconds, "options": {"expires": seconds}}
            for name, seconds in every.items()}


def make_celery(settings: Settings) -> Celery:
    """A Celery app on the settings' Redis; the API uses it to send, workers to run."""
    app = Celery("binderq", broker=settings.redis_url, backend=settings.redis_url,
                 include=TASK_MODULES)
    unacked_for = visibility_timeout(settings)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # The launch workers' threads (their command line says --pool threads); the build
        # worker's command line sets its own --concurrency 1.
        worker_concurrency=settings.launch_concurrency,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_transport_options={"visibility_timeout": unacked_for},
        result_backend_transport_options={"visibility_timeout": unacked_for},
        broker_connection_retry_on_startup=True,
        # Not True: cancelling on a lost broker records the cancellation in the result
        # backend, the very Redis that is gone, and the worker dies of it. Tasks are
        # idempotent, so one that finishes, and is delivered again, does no harm.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_routes=task_routes(settings),
        task_annotations=task_time_limits(settings),
        task_default_queue=MAINTENANCE,
        task_time_limit=DEFAULT_TIME_LIMIT,
        task_soft_time_limit=DEFAULT_SOFT_TIME_LIMIT,
        task_track_started=True,
        result_expires=24 * 3600,
        worker_hijack_root_logger=False,
        enable_utc=True,
        beat_schedule=beat_schedule(settings),
    )
    app.binderq_settings = settings  # the worker's adapters are built from these
    install_task_logging(settings.log_format)
    return app


def settings_of(app: Celery) -> Settings:
    """The Settings the app was made from by make_celery."""
    return app.binderq_settings
