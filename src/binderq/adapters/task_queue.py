"""Enqueue work for the workers: the API's only way to ask for Docker or proxy work."""

from __future__ import annotations

from typing import Any

import kombu.exceptions
import redis
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from binderq.adapters.redis_store import RedisStore
from binderq.domain.errors import DependencyDown
from binderq.domain.hosts import host_queue
from binderq.domain.tokens import new_task_id
from binderq.tasks import HEALTH_PING, SERVER_TASKS

# The canary must answer within the health check's budget, even when Redis is down.
CANARY_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                       "interval_max": 0.2}


class CeleryTaskQueue:
    """Send tasks by name (the API never imports task code) and read their states."""

    def __init__(self, celery: Celery, store: RedisStore) -> None:
        self.celery = celery
        self.store = store

    def enqueue(self, name: str, *args: Any, task_id: str | None = None,
                host: str | None = None) -> str:
        """Queue task name with args; returns its id. DependencyDown if Redis is down.

        It goes to host's queue when host is given; a server's launch or stop (args[0]: the
        server's id) to its own host's; anything else as the task table routes it.
        """
        task_id = task_id or new_task_id()
        if host is None and name in SERVER_TASKS:
            host = self.store.servers.host_of(args[0]) or None  # before hosts: the first
        self.store.tasks.record(task_id, name)
        where = {"queue": host_queue(host)} if host else {}
        try:
            self.celery.send_task(name, args=list(args), task_id=task_id, **where)
        except (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError) as error:
            raise DependencyDown("Redis", f"could not queue {name}: {error}") from error
        return task_id

    def task(self, task_id: str) -> dict[str, Any] | None:
        """{id, name, state, result, error} of a task binderq queued, or None."""
        name = self.store.tasks.name(task_id)
        if name is None:
            return None
        result = self.celery.AsyncResult(task_id)
        state = result.state
        failed = state in ("FAILURE", "REVOKED")
        return {
            "id": task_id,
            "name": name,
            "state": state,
            "result": None if failed else _jsonable(result.result),
            "error": repr(result.result) if failed else None,
        }

    def ping_worker(self, queue: str, timeout: float) -> dict[str, Any]:
        """Run the canary task on queue and return what the worker saw; raises on no answer."""
        result = self.celery.send_task(HEALTH_PING.name, queue=queue, expires=timeout * 4,
                                       retry_policy=CANARY_RETRY_POLICY)
        try:
            return result.get(timeout=timeout, disable_sync_subtasks=False)
        except CeleryTimeout as error:
            raise DependencyDown("workers", f"no worker on {queue!r} answered") from error
        finally:
            result.forget()
            _release(result)


def _release(result: Any) -> None:
    """Stop listening for result now, while Redis answers. Otherwise AsyncResult.__del__
    unsubscribes whenever the object is collected (a timed-out canary lives on in a reference
    cycle of its exception), and if Redis is down by then it retries for 20 s in whichever
    thread collected it: a health call that must answer in 2 s, say."""
    try:
        result.backend.remove_pending_result(result)
    finally:
        result.backend = None  # __del__ then has nothing left to cancel


def _jsonable(value: Any) -> Any:
    plain = (dict, list, str, int, float, bool, type(None))
    return value if isinstance(value, plain) else str(value)
