"""Guards the Celery settings that keep work from being lost or done twice."""

from __future__ import annotations

from binderq.settings import Settings
from binderq.workers.app import (
    DEFAULT_TIME_LIMIT,
    TASK_TIME_LIMITS,
    VISIBILITY_TIMEOUT,
    make_celery,
)


def _app():
    app = make_celery(Settings(redis_url="redis://127.0.0.1:1/0"))
    app.loader.import_default_modules()
    return app


def test_tasks_are_acked_late_rejected_on_worker_loss_and_prefetched_one_at_a_time():
    conf = _app().conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1


def test_only_json_crosses_the_queue():
    conf = _app().conf
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]


def test_visibility_timeout_exceeds_every_task_time_limit():
    app = _app()
    binderq_tasks = {name: task for name, task in app.tasks.items()
                     if name.startswith("binderq.")}
    assert binderq_tasks, "no binderq task registered"
    limits = [task.time_limit or DEFAULT_TIME_LIMIT for task in binderq_tasks.values()]
    assert app.conf.broker_transport_options["visibility_timeout"] == VISIBILITY_TIMEOUT
    assert max(limits) < VISIBILITY_TIMEOUT
    assert max(TASK_TIME_LIMITS.values()) < VISIBILITY_TIMEOUT


def test_every_task_has_an_explicit_binderq_name_and_a_routed_queue():
    app = _app()
    ours = [name for name in app.tasks if name.startswith("binderq.")]
    assert set(TASK_TIME_LIMITS) <= set(ours)
    for name in ours:
        route = app.amqp.router.route({}, name)
        assert route["queue"].name in ("launches", "builds", "maintenance"), name


def test_every_task_soft_limit_is_below_its_hard_limit():
    # Celery refuses to send a task whose soft limit exceeds its hard one (beat included).
    app = _app()
    for name, task in app.tasks.items():
        if not name.startswith("binderq."):
            continue
        hard = task.time_limit or app.conf.task_time_limit
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        assert soft <= hard, name


def test_beat_can_send_every_scheduled_task():
    app = _app()
    app.conf.broker_url = "memory://"  # kombu's in-memory transport: a real publish
    app.conf.result_backend = "cache+memory://"
    for entry in app.conf.beat_schedule.values():
        # What beat does for each entry; Celery checks the time limits here.
        result = app.tasks[entry["task"]].apply_async(**entry.get("options", {}))
        assert result.id
