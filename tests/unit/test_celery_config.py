"""The Celery app that make_celery builds runs the task table's tasks as the table says, and
keeps work from being lost or done twice."""

from __future__ import annotations

import os
import subprocess
import sys

import fakeredis
import pytest
from celery import Celery

from binderq.adapters.redis_store import RedisStore
from binderq.adapters.task_queue import CeleryTaskQueue
from binderq.settings import Settings
from binderq.tasks import BUILD, QUEUES, TASKS, queue_of
from binderq.workers.app import make_celery

SETTINGS = Settings(redis_url="redis://127.0.0.1:1/0", build_timeout=900)


def _app(settings: Settings = SETTINGS) -> Celery:
    app = make_celery(settings)
    app.loader.import_default_modules()
    return app


def _in_memory(app: Celery) -> Celery:
    app.conf.broker_url = "memory://"  # kombu's in-memory transport: a real publish
    app.conf.result_backend = "cache+memory://"
    return app


def _drain(app: Celery) -> dict[str, list[str]]:
    """The names of the tasks waiting on each queue, taking them off."""
    waiting: dict[str, list[str]] = {}
    with app.connection_for_read() as connection:
        for queue in QUEUES:
            simple = connection.SimpleQueue(queue, no_ack=True)
            while True:
                try:
                    message = simple.get(timeout=0.05)
                except simple.Empty:
                    break
                waiting.setdefault(queue, []).append(message.headers["task"])
    return waiting


def test_tasks_are_acked_late_rejected_on_worker_loss_and_prefetched_one_at_a_time():
    conf = _app().conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1


def test_only_json_crosses_the_queue():
    conf = _app().conf
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]


@pytest.mark.parametrize("spec", TASKS, ids=lambda spec: spec.name)
def test_every_task_in_the_table_runs_under_its_name_queue_limits_and_retries(spec):
    app = _app()
    task = app.tasks[spec.name]
    limits = spec.time_limits(SETTINGS)
    assert app.amqp.router.route({}, spec.name)["queue"].name == queue_of(spec, SETTINGS)
    assert (task.soft_time_limit, task.time_limit) == (limits.soft, limits.hard)
    assert task.acks_late is spec.acks_late
    if spec.retry:
        assert tuple(task.autoretry_for) == spec.retry.retry_on
        assert task.max_retries == spec.retry.max_retries
        assert task.retry_backoff_max == spec.retry.backoff_max
    else:
        assert not getattr(task, "autoretry_for", ())


def test_every_binderq_task_the_workers_register_is_in_the_table():
    registered = {name for name in _app().tasks if name.startswith("binderq.")}
    assert registered == {spec.name for spec in TASKS}


@pytest.mark.parametrize("build_timeout", [60.0, 1800.0, 7200.0])
def test_every_task_soft_limit_is_below_its_hard_limit(build_timeout):
    # Celery refuses to send a task whose soft limit exceeds its hard one (beat included).
    app = _app(Settings(redis_url="redis://127.0.0.1:1/0", build_timeout=build_timeout))
    for spec in TASKS:
        task = app.tasks[spec.name]
        assert 0 < task.soft_time_limit < task.time_limit, spec.name


@pytest.mark.parametrize("build_timeout", [60.0, 1800.0, 7200.0])
def test_visibility_timeout_exceeds_every_time_limit_a_worker_applies(build_timeout):
    app = _app(Settings(redis_url="redis://127.0.0.1:1/0", build_timeout=build_timeout))
    applied = [task.time_limit or app.conf.task_time_limit for task in app.tasks.values()]
    longest = max(applied)
    assert longest >= build_timeout  # the build's own limit counts
    assert app.conf.broker_transport_options["visibility_timeout"] > longest
    assert app.conf.result_backend_transport_options["visibility_timeout"] > longest


def test_the_build_limits_come_from_the_settings_given_not_the_environment(monkeypatch):
    monkeypatch.setenv("BINDERQ_BUILD_TIMEOUT", "5")
    app = _app(Settings(redis_url="redis://127.0.0.1:1/0", build_timeout=600))
    build = app.tasks[BUILD.name]
    assert build.soft_time_limit == 600 and build.time_limit > 600


def test_a_task_enqueued_through_the_client_lands_on_the_queue_the_table_names():
    app = _in_memory(_app())
    _drain(app)
    client = CeleryTaskQueue(app, RedisStore(fakeredis.FakeRedis()))
    for spec in TASKS:
        client.enqueue(spec.name, "some-id")
    waiting = _drain(app)
    for spec in TASKS:
        assert spec.name in waiting.get(queue_of(spec, SETTINGS), []), spec.name
    assert sum(len(names) for names in waiting.values()) == len(TASKS)


def test_beat_sends_only_tasks_of_the_table_each_to_its_queue():
    app = _in_memory(_app())
    queue_of = {spec.name: spec.queue for spec in TASKS}
    schedule = app.conf.beat_schedule
    assert schedule and {entry["task"] for entry in schedule.values()} <= set(queue_of)
    _drain(app)
    for entry in schedule.values():
        # What beat does for each entry; Celery checks the time limits here.
        app.tasks[entry["task"]].apply_async(**entry.get("options", {}))
    waiting = _drain(app)
    for entry in schedule.values():
        assert entry["task"] in waiting.get(queue_of[entry["task"]], []), entry["task"]


def test_services_and_the_table_import_without_celery():
    code = ("import sys, binderq.tasks, binderq.services.servers, binderq.services.pools, "
            "binderq.services.stagings, binderq.services.builds, binderq.services.lifecycle; "
            "sys.exit('celery' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0
