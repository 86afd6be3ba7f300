"""Restart Redis and the Docker engine under a running service; everything must converge.

This file sorts last: restarting dockerd stops every container on the machine.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from binderq.adapters.docker_runtime import DockerRuntime
from binderq.bootstrap import create_wsgi_app
from binderq.domain.models import ServerStatus
from binderq.processes import free_port, start_redis, stop_process
from tests.integration.conftest import (
    NOTEBOOK_IMAGE,
    OPERATOR,
    SMALL,
    stage_in_app,
    wait_for,
    worker_pool,
)

ROOT = Path(__file__).resolve().parents[2]


def _worker(settings, log):
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "binderq.workers.main", "worker", "-Q",
         "launches.local,maintenance", *worker_pool("launches.local", None),
         "--without-mingle", "--without-gossip",
         "-n", f"restart-{settings.instance}@%h"],
        env=settings.to_env(), stdout=open(log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True)


def _stage(api, name):
    staging = stage_in_app(api, name, image=NOTEBOOK_IMAGE, resources=SMALL)
    assert staging["status"] == "ready", staging


def _healthy(api, check):
    return api.get("/api/health").get_json()["checks"][check]["ok"]


@pytest.fixture
def persistent_stack(settings, tmp_path, notebook_image, proxy):
    """Its own Redis (append-only file on), worker and instance, so it can be restarted."""
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    own = settings.with_changes(redis_url=f"redis://127.0.0.1:{port}/0",
                                instance=f"{settings.instance}r", launch_timeout=20)
    state = {"redis": start_redis(port, data_dir=str(data), log_file=tmp_path / "redis.log")}
    worker = _worker(own, tmp_path / "worker.log")
    api = create_wsgi_app(own).test_client()
    wait_for(lambda: _healthy(api, "workers"), timeout=60, what="the worker answers")

    def restart_redis():
        if state["redis"].poll() is None:
            state["redis"].send_signal(signal.SIGTERM)  # redis writes its data as it stops
            state["redis"].wait(timeout=30)
        started = time.monotonic()
        state["redis"] = start_redis(port, data_dir=str(data), log_file=tmp_path / "redis.log")
        return started

    yield own, api, restart_redis
    if state["redis"].poll() is not None:  # a test left it down
        restart_redis()
    runtime = DockerRuntime(instance=own.instance)
    for staging in api.get("/api/stagings", headers=OPERATOR).get_json() or []:
        api.delete(f"/api/stagings/{staging['name']}?force=true", headers=OPERATOR)
    stop_process(worker, timeout=20)
    runtime.remove_instance()
    stop_process(state["redis"])


def test_a_redis_restart_loses_no_answered_launch_and_workers_consume_again(persistent_stack):
    settings, api, restart_redis = persistent_stack
    _stage(api, "steady")
    api.put("/api/pools/steady", json={"size": 2}, headers=OPERATOR)
    wait_for(lambda: api.get("/api/pools/steady", headers=OPERATOR).get_json()["ready"] == 2,
             timeout=120, what="the pool is full")

    answered, stop = [], threading.Event()

    def launch_all_along():
        while not stop.is_set():
            response = api.post("/api/stagings/steady/servers", headers=OPERATOR)
            assert response.status_code in (201, 202, 429, 503), response.get_json()
            if response.status_code in (201, 202):
                answered.append(response.get_json()["id"])
            time.sleep(0.4)

    launcher = threading.Thread(target=launch_all_along)
    launcher.start()
    try:
        time.sleep(2)
        restarted_at = restart_redis()
        wait_for(lambda: _healthy(api, "workers"), timeout=60, what="workers consume again")
        consuming_after = time.monotonic() - restarted_at
        time.sleep(3)
    finally:
        stop.set()
        launcher.join()
    assert answered, "no launch was answered"

    def all_settled():
        api.post("/api/reconcile", headers=OPERATOR)  # as beat does, every minute
        found = [api.get(f"/api/servers/{server_id}", headers=OPERATOR).get_json()
                 for server_id in answered]
        return found if all(s["status"] in ("ready", "failed") for s in found) else None

    found = wait_for(all_settled, timeout=240, what="every answered launch settles")
    assert all(s["status"] == "ready" or s["error"] for s in found)
    assert consuming_after < 60
    print(f"redis restart: {len(answered)} answered launches settled "
          f"({sum(s['status'] == 'ready' for s in found)} ready); workers consumed again "
          f"{consuming_after:.1f} s after redis came back")


def test_redis_down_makes_health_503_within_2_s_and_launches_fail_fast(persistent_stack):
    settings, api, restart_redis = persistent_stack
    _stage(api, "quiet")
    client = redis.Redis.from_url(settings.redis_url)
    client.shutdown(nosave=False)
    started = time.monotonic()
    response = api.get("/api/health")
    assert time.monotonic() - started < 2
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"]["ok"] is False
    started = time.monotonic()
    launch = api.post("/api/stagings/quiet/servers", headers=OPERATOR)
    assert launch.status_code == 503 and "Redis" in launch.get_json()["message"]
    assert time.monotonic() - started < 3
    restart_redis()  # back, for the clean-up


def test_a_docker_restart_shows_in_health_and_nothing_counts_as_running_that_is_not(
        api, store, clean_runtime, launch_worker):
    _stage(api, "fragile")
    launched = [api.post("/api/stagings/fragile/servers", headers=OPERATOR).get_json()
                for _ in range(2)]
    wait_for(lambda: all(store.servers.get(s["id"]).status == ServerStatus.READY
                         for s in launched), timeout=90, what="both servers are ready")

    stopped_at = time.monotonic()
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=True)
    try:
        wait_for(lambda: api.get("/api/health").status_code == 503, timeout=30,
                 what="health says Docker is down")
        red_after = time.monotonic() - stopped_at
        started = time.monotonic()
        response = api.get("/api/health")
        assert time.monotonic() - started < 2
        assert response.get_json()["checks"]["docker"]["ok"] is False
        failing = api.post("/api/stagings/fragile/servers", headers=OPERATOR).get_json()
        server = wait_for(lambda: _settled(store, failing["id"]), timeout=30,
                          what="a launch during the outage fails")
        assert server.status == ServerStatus.FAILED and "Docker engine" in server.error
    finally:
        wait_for(lambda: subprocess.run(["pgrep", "-x", "dockerd"]).returncode != 0,
                 timeout=60, what="dockerd exits")
        restarted_at = time.monotonic()
        subprocess.run(["bash", str(ROOT / "deploy/start-dockerd.sh")], check=True)
    wait_for(lambda: api.get("/api/health").status_code == 200, timeout=60,
             what="health is green again")
    green_after = time.monotonic() - restarted_at

    task = api.post("/api/reconcile", headers=OPERATOR).get_json()["task_id"]
    wait_for(lambda: api.get(f"/api/tasks/{task}", headers=OPERATOR).get_json()["state"]
             == "SUCCESS", timeout=60, what="reconcile ran")
    running = {c.server_id for c in clean_runtime.server_containers() if c.running}
    for server in store.servers.active():
        if server.status == ServerStatus.READY:
            assert server.id in running, f"{server.id} counted as running but is not"
    for server in launched:
        record = store.servers.get(server["id"])
        assert record.status == ServerStatus.FAILED and record.error == "its container is gone"
    print(f"dockerd restart: health red {red_after:.2f} s after the stop, green "
          f"{green_after:.2f} s after the start command")


def _settled(store, server_id):
    server = store.servers.get(server_id)
    return server if server.status in (ServerStatus.READY, ServerStatus.FAILED) else None
