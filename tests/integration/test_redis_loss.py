"""Redis losing its data never destroys running servers, and a second deployment under the
same instance name never removes the first's: real Redis, dockerd, proxy, API and worker."""

from __future__ import annotations

import shutil
import threading
import time

import redis
import requests

from binderq.adapters.redis_store import RedisStore
from binderq.adapters.task_queue import CeleryTaskQueue
from binderq.bootstrap import build_celery
from binderq.cli import Stack
from binderq.domain.models import ServerStatus
from binderq.domain.spec import LABEL_DEPLOYMENT, LABEL_EPOCH, container_name, server_path
from binderq.processes import free_port, start_redis, stop_process
from binderq.services.lifecycle import reconcile
from tests.integration.conftest import SMALL, launch_settled, stage, wait_for


def status_code(server) -> int | str:
    """What {url}api/status?token= answers through the proxy (or the error's name)."""
    try:
        return requests.get(f"{server['url']}api/status", params={"token": server["token"]},
                            timeout=5).status_code
    except requests.RequestException as error:
        return type(error).__name__


class Reader(threading.Thread):
    """A reader who keeps using a server through the proxy; what it got, in order."""

    def __init__(self, server) -> None:
        super().__init__(daemon=True)
        self.server, self.answers, self.done = server, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.answers.append(status_code(self.server))
            time.sleep(0.2)

    def stop(self) -> list:
        self.done.set()
        self.join()
        return self.answers


def test_redis_flushed_under_a_running_server_loses_it_never(http, store, proxy, clean_runtime,
                                                             settings):
    base, session = http
    stage(base, session, "phoenix", resources=SMALL)
    server = launch_settled(base, session, "phoenix")
    assert server["status"] == "ready" and status_code(server) == 200
    name = container_name(settings.instance, server["id"])
    made_in = clean_runtime.container_state(name).labels[LABEL_EPOCH]
    target = store.servers.get(server["id"]).target

    reader = Reader(server)
    reader.start()
    store.redis.flushall()  # a wipe, or a failover to an empty replica
    queue = CeleryTaskQueue(build_celery(settings), store)
    try:
        for _ in range(2):
            repairs = reconcile(store=store, runtime=clean_runtime, proxy=proxy, queue=queue,
                                settings=settings)
            assert not repairs.remove_containers and not repairs.remove_routes, repairs
            assert status_code(server) == 200
            assert clean_runtime.container_state(name).running
            record = store.servers.get(server["id"])
            assert record.status == ServerStatus.READY and record.url == server["url"]
            assert record.target == target
            assert record.image_id == server["image_id"]  # what its container runs
    finally:
        answers = reader.stop()
    assert answers and set(answers) == {200}, answers
    assert store.epochs.current()[0] != made_in  # the loss is on record: a new epoch

    # The adopted server is an ordinary one again: it stops on request.
    assert session.delete(f"{base}/api/servers/{server['id']}").status_code == 202
    wait_for(lambda: clean_runtime.container_state(name) is None, timeout=60,
             what="the adopted server's container is removed")


def test_a_second_deployment_with_the_same_instance_name_removes_nothing_of_the_first(
        http, store, proxy, clean_runtime, settings, logs_dir):
    base, session = http
    stage(base, session, "first", resources=SMALL)
    server = launch_settled(base, session, "first")
    name = container_name(settings.instance, server["id"])
    ours = clean_runtime.container_state(name).labels[LABEL_DEPLOYMENT]

    port = free_port()
    second_redis = start_redis(port, log_file=logs_dir / "second-redis.log")
    second = settings.with_changes(redis_url=f"redis://127.0.0.1:{port}/0")
    second_store = RedisStore(redis.Redis.from_url(second.redis_url))
    stack = Stack(second, host="127.0.0.1", port=free_port())
    try:
        for adopt in (None, True):  # its beat's reconcile, and an operator's --adopt
            repairs = reconcile(store=second_store, runtime=clean_runtime, proxy=proxy,
                                queue=CeleryTaskQueue(build_celery(second), second_store),
                                settings=second, adopt=adopt)
            assert set(repairs.foreign) == {server["id"]}, repairs
            assert not repairs.remove_containers and not repairs.adopt
            assert not repairs.remove_routes
        stack._stop_servers()  # what the second `binderq up` does as it stops
    finally:
        stop_process(second_redis)
        shutil.rmtree(stack.run_dir, ignore_errors=True)

    assert clean_runtime.container_state(name).running
    assert clean_runtime.container_state(name).labels[LABEL_DEPLOYMENT] == ours
    assert server_path(server["id"]).rstrip("/") in proxy.routes()
    assert status_code(server) == 200
    assert store.servers.get(server["id"]).status == ServerStatus.READY
