"""The launch queue against the real things: its Lua in real Redis under concurrent arrivals
and concurrent promoters (FIFO kept, capacity never overfilled, no entry skipped or served
twice), and end to end under gunicorn with a real launch worker and Docker: a launch queued
behind a full staging becomes ready when room frees and opens with its token; one that
leaves (DELETE) or that nobody polls never gets a container."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from binderq.adapters.redis_store import RedisStore
from binderq.adapters.task_queue import CeleryTaskQueue
from binderq.bootstrap import build_celery
from binderq.domain.models import ServerStatus, Staging, StagingStatus
from binderq.domain.shares import ClientShare
from binderq.services import deploy, launch_queue
from tests.fakes import FakeQueue
from tests.integration.conftest import NOTEBOOK_IMAGE, pinned, stage, wait_for

pytestmark = pytest.mark.integration

ARRIVALS = 24
PROMOTERS = 8


def _ready_staging(store, name: str = "queued", **fields) -> str:
    store.stagings.save(pinned(Staging(name=name, image=NOTEBOOK_IMAGE, public=True,
                                       status=StagingStatus.READY,
                                       version=store.stagings.next_version(name), **fields)))
    return name


def _at_once(count: int, work) -> list:
    """count calls of work(i) in threads, released together, each with its own Redis
    connection (the store's pool hands each thread one)."""
    start = threading.Barrier(count)

    def run(i):
        start.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_concurrent_arrivals_and_promoters_keep_fifo_and_never_overfill(settings, store):
    """24 launches arrive at once at a full service; room frees a few at a time while 8
    promoters run at once: the order of service is the order of arrival, exactly as many
    are promoted as there was room, and none twice."""
    settings = settings.with_changes(max_servers=3)
    queue = FakeQueue()  # records the launch tasks: no container is made here
    name = _ready_staging(store)
    running = [deploy.request_launch(name, store=store, queue=queue, settings=settings,
                                     share=ClientShare("operator")).server for _ in range(3)]
    stores = [RedisStore(redis.Redis.from_url(settings.redis_url)) for _ in range(ARRIVALS)]
    joined = _at_once(ARRIVALS, lambda i: deploy.request_launch(
        name, store=stores[i], queue=queue, settings=settings, share=ClientShare(f"c{i}"),
        queue_when_full=True))
    assert {launch.server.status for launch in joined} == {ServerStatus.QUEUED}
    line = store.launch_queue.waiting()
    assert sorted(line) == sorted(launch.server.id for launch in joined)
    places = {launch.server.id: launch_queue.place_in_queue(launch.server, store=store)
              for launch in joined}
    assert [places[server_id].position for server_id in line] == list(range(1, ARRIVALS + 1))

    served: list[str] = []
    for freed in ([running[0]], running[1:]):
        for server in freed:
            store.servers.transition(server.id, [ServerStatus.PENDING],
                                     status=ServerStatus.STOPPED)
        rounds = _at_once(PROMOTERS, lambda i: launch_queue.serve_queue(
            store=stores[i], queue=queue, settings=settings))
        this_round = sorted((server_id for ids in rounds for server_id in ids),
                            key=line.index)
        assert len(this_round) == len(freed), rounds
        served += this_round
        assert store.servers.active_count() == settings.max_servers
    assert served == line[:3]
    assert store.launch_queue.waiting() == line[3:]
    launches = [args[0] for name_, args, _ in queue.sent if name_ == "binderq.servers.launch"]
    assert sorted(launches[3:]) == sorted(served)  # each promoted launch queued once


def _poll(base: str, server: dict) -> dict:
    answer = requests.get(f"{base}/api/servers/{server['id']}", timeout=10,
                          headers={"Authorization": f"token {server['token']}"})
    answer.raise_for_status()
    return answer.json()


def _queue_launch(base: str, session, name: str) -> dict:
    answer = session.post(f"{base}/api/stagings/{name}/servers?queue=true")
    assert answer.status_code == 202, answer.text
    return answer.json()


def test_a_queued_launch_is_served_when_room_frees_and_opens_with_its_token(http, store):
    base, session = http
    stage(base, session, "queue-one", max_servers=1)
    first = session.post(f"{base}/api/stagings/queue-one/servers").json()
    wait_for(lambda: _poll(base, first)["status"] == "ready", timeout=120,
             what="the first server is ready")
    refused = session.post(f"{base}/api/stagings/queue-one/servers")
    assert refused.status_code == 429 and "max_servers" in refused.json()["message"]

    queued = _queue_launch(base, session, "queue-one")
    assert (queued["status"], queued["position"]) == ("queued", 1)
    assert "eta" in queued and queued["token"]
    assert session.delete(f"{base}/api/servers/{first['id']}").status_code == 202

    ready = wait_for(lambda: (s := _poll(base, queued))["status"] in ("ready", "failed") and s,
                     timeout=120, what="the queued server is served")
    assert ready["status"] == "ready", ready
    assert "position" not in ready
    opened = requests.get(f"{ready['url']}api/status", params={"token": queued["token"]},
                          timeout=10)
    assert opened.status_code == 200, opened.text
    assert store.servers.get(first["id"]).status == ServerStatus.STOPPED


def test_a_launch_that_leaves_or_is_not_polled_never_gets_a_container(
        http, store, settings, clean_runtime):
    base, session = http
    stage(base, session, "queue-two", max_servers=1)
    first = session.post(f"{base}/api/stagings/queue-two/servers").json()
    wait_for(lambda: _poll(base, first)["status"] == "ready", timeout=120,
             what="the first server is ready")
    leaving = _queue_launch(base, session, "queue-two")
    forgotten = _queue_launch(base, session, "queue-two")
    assert (leaving["position"], forgotten["position"]) == (1, 2)

    left = requests.delete(f"{base}/api/servers/{leaving['id']}", timeout=10,
                           headers={"Authorization": f"token {leaving['token']}"})
    assert left.status_code == 202 and left.json()["status"] == "stopped"
    time.sleep(1.5)  # nobody polls `forgotten`; the backstop runs with a 1 s timeout
    celery = CeleryTaskQueue(build_celery(settings), store)
    short = settings.with_changes(queue_poll_timeout=1.0)
    assert launch_queue.serve_queue(store=store, queue=celery, settings=short) == []
    gone = _poll(base, forgotten)
    assert gone["status"] == "stopped" and "not polled" in gone["error"]

    assert session.delete(f"{base}/api/servers/{first['id']}").status_code == 202
    wait_for(lambda: store.servers.get(first["id"]).status == ServerStatus.STOPPED,
             timeout=60, what="the first server stops (and its stop task serves the queue)")
    time.sleep(3)  # a launch task, had one been sent, would have made its container by now
    made = {container.server_id for container in clean_runtime.server_containers()}
    assert not made & {leaving["id"], forgotten["id"]}
    for server in (leaving, forgotten):
        assert store.servers.get(server["id"]).status == ServerStatus.STOPPED
    assert store.launch_queue.waiting() == []
