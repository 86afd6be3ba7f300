"""The Celery app, configured from Settings so that no work is lost or done twice."""

from __future__ import annotations

from celery import Celery

from binderq.settings import Settings

QUEUE_LAUNCHES = "launches"
QUEUE_BUILDS = "builds"
QUEUE_MAINTENANCE = "maintenance"

# Hard time limit of each task, in seconds. Soft limits are 90% of these.
TASK_TIME_LIMITS = {
    "binderq.stagings.stage": 120,
    "binderq.servers.launch": 300,
    "binderq.servers.stop": 120,
    "binderq.health.ping": 30,
    "binderq.pools.replenish": 60,
    "binderq.pools.upkeep": 120,
    "binderq.maintenance.cull": 120,
    "binderq.maintenance.reconcile": 120,
    # Soft limit: BINDERQ_BUILD_TIMEOUT, which ends the build `failed`; hard: 60 s later.
    "binderq.builds.build": int(Settings.from_env().build_timeout) + 60,
}
DEFAULT_TIME_LIMIT = 300
# A message a worker took but never acked is handed out again after this many seconds, so it
# must exceed every time limit: else a slow task would be run a second time while it runs.
VISIBILITY_TIMEOUT = 2 * max([DEFAULT_TIME_LIMIT, *TASK_TIME_LIMITS.values()])

TASK_ROUTES = {
    "binderq.stagings.*": {"queue": QUEUE_LAUNCHES},
    "binderq.servers.*": {"queue": QUEUE_LAUNCHES},
    "binderq.builds.*": {"queue": QUEUE_BUILDS},
    "binderq.pools.*": {"queue": QUEUE_MAINTENANCE},
    "binderq.maintenance.*": {"queue": QUEUE_MAINTENANCE},
    "binderq.health.*": {"queue": QUEUE_LAUNCHES},
}

TASK_MODULES = [
    "binderq.workers.tasks.stagings",
    "binderq.workers.tasks.servers",
    "binderq.workers.tasks.health",
    "binderq.workers.tasks.pools",
    "binderq.workers.tasks.maintenance",
    "binderq.workers.tasks.builds",
]

POOL_UPKEEP_INTERVAL = 5.0


def beat_schedule(settings: Settings) -> dict[str, dict]:
    """What celery beat (exactly one) sends, and how often, in seconds."""
    every = {
        "binderq.pools.upkeep": POOL_UPKEEP_INTERVAL,
        "binderq.maintenance.cull": settings.cull_interval,
        "binderq.maintenance.reconcile": settings.reconcile_interval,
    }
    # A run that waited longer than its interval is superseded by the next one.
    return {name: {"task": name, "schedule": seconds, "options": {"expires": seconds}}
            for name, seconds in every.items()}


def time_limits(name: str) -> dict[str, int]:
    """Hard and soft time limits of a task; the soft one lets it clean up first."""
    hard = TASK_TIME_LIMITS.get(name, DEFAULT_TIME_LIMIT)
    soft = hard - 60 if name == "binderq.builds.build" else int(hard * 0.9)
    return {"time_limit": hard, "soft_time_limit": soft}


def make_celery(settings: Settings) -> Celery:
    """A Celery app on the settings' Redis; the API uses it to send, workers to run."""
    app = Celery("binderq", broker=settings.redis_url, backend=settings.redis_url,
                 include=TASK_MODULES)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        # Not True: cancelling on a lost broker records the cancellation in the result
        # backend, the very Redis that is gone, and the worker dies of it. Tasks are
        # idempotent, so one that finishes, and is delivered again, does no harm.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_routes=TASK_ROUTES,
        task_default_queue=QUEUE_MAINTENANCE,
        task_time_limit=DEFAULT_TIME_LIMIT,
        task_soft_time_limit=int(DEFAULT_TIME_LIMIT * 0.9),
        task_track_started=True,
        result_expires=24 * 3600,
        worker_hijack_root_logger=False,
        enable_utc=True,
        beat_schedule=beat_schedule(settings),
    )
    return app
