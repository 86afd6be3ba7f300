"""Culling, reconcile and faults on the real stack: processes killed and restarted here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import psutil
import pytest
import requests

from binderq.adapters.notebook_probe import last_activity, notebook_status
from binderq.adapters.task_queue import CeleryTaskQueue
from binderq.bootstrap import build_celery
from binderq.domain.models import ServerStatus
from binderq.domain.spec import server_path
from binderq.domain.tokens import server_token
from binderq.processes import start_proxy
from binderq.services.lifecycle import cull_idle_servers
from tests.integration.conftest import SMALL, fill_pool, settle, stage, wait_for


def launch_ready(base, session, staging, count):
    launched = [session.post(f"{base}/api/stagings/{staging}/servers").json()
                for _ in range(count)]

    def all_ready():
        found = [session.get(f"{base}/api/servers/{s['id']}").json() for s in launched]
        assert all(s["status"] in ("pending", "starting", "ready") for s in found), found
        return found if all(s["status"] == "ready" for s in found) else None

    ready = wait_for(all_ready, timeout=120, what="servers are ready")
    return [{**server, "token": launched[i]["token"]} for i, server in enumerate(ready)]


def keep_using(servers, *, seconds: float) -> None:
    """Use each server every half second for seconds, as a person at work would."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for server in servers:
            requests.get(f"{server['url']}api/contents", timeout=5,
                         params={"token": server["token"]})
        time.sleep(0.5)


def answers(server) -> bool:
    try:
        return requests.get(f"{server['url']}api/status", params={"token": server["token"]},
                            timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_cull_versus_claim_no_active_server_is_culled_and_none_twice(http, store, proxy,
                                                                     settings):
    base, session = http
    stage(base, session, "cullme", cull_timeout=4)
    fill_pool(base, session, "cullme", 4)
    queue = CeleryTaskQueue(build_celery(settings), store)

    def activity_of(server):
        token = server_token(settings.secret_key, server.id)
        status = notebook_status(f"{server.target}{server_path(server.id)}", token)
        return last_activity(status) if status else None

    culled, done = [], threading.Event()

    def culler():
        while not done.is_set():
            culled.extend((cull.server_id, time.monotonic()) for cull in cull_idle_servers(
                store=store, proxy=proxy, queue=queue, activity_of=activity_of))
            time.sleep(1)

    def launch():
        response = session.post(f"{base}/api/stagings/cullme/servers")
        return {**response.json(), "claimed": time.monotonic()}

    thread = threading.Thread(target=culler)
    thread.start()
    try:
        active = [launch(), launch()]
        idle = [launch(), launch()]
        keep_using(active, seconds=10)  # the idle ones are not used
        late = launch()  # claimed while the culler runs
    finally:
        done.set()
        thread.join()

    counts = Counter(server_id for server_id, _ in culled)
    assert all(count == 1 for count in counts.values()), counts
    assert {server["id"] for server in idle} <= set(counts)
    for server in [*active, late]:
        assert store.servers.get(server["id"]).status == ServerStatus.READY, server["id"]
    claimed_at = {server["id"]: server["claimed"] for server in [*active, *idle, late]}
    for server_id, when in culled:
        assert when - claimed_at.get(server_id, 0) >= 4 - 0.5  # idle for cull_timeout at least
    for server in idle:
        assert "culled: idle" in store.servers.get(server["id"]).error
    pooled_waiting = [s for s in store.servers.active() if s.staging == "cullme"
                      and s.pooled and s.claimed_at is None]
    assert not set(counts) & {s.id for s in pooled_waiting}


def test_after_the_proxy_restarts_one_reconcile_makes_every_server_reachable(
        http, store, proxy_ports, settings, logs_dir):
    base, session = http
    stage(base, session, "survivor", resources=SMALL)
    servers = launch_ready(base, session, "survivor", 2)
    assert all(answers(server) for server in servers)

    old = proxy_ports["process"]
    old.send_signal(signal.SIGKILL)
    old.wait()
    proxy_ports["process"] = start_proxy(proxy_ports["port"], proxy_ports["api_port"],
                                         proxy_ports["token"],
                                         log_file=logs_dir / "proxy-restarted.log")
    assert not any(answers(server) for server in servers)  # the routes are lost

    task = session.post(f"{base}/api/reconcile").json()["task_id"]
    result = wait_for(lambda: _finished(session, base, task), timeout=30,
                      what="the reconcile task")
    assert sorted(result["add_routes"]) == sorted(server["id"] for server in servers)
    assert all(answers(server) for server in servers)


def _finished(session, base, task_id):
    task = session.get(f"{base}/api/tasks/{task_id}").json()
    assert task["state"] != "FAILURE", task
    return task["result"] if task["state"] == "SUCCESS" else None


def test_after_redis_is_wiped_reconcile_adopt_rebuilds_the_running_servers(
        http, store, proxy, settings):
    base, session = http
    stage(base, session, "phoenix", resources=SMALL)
    servers = launch_ready(base, session, "phoenix", 2)
    staging = session.get(f"{base}/api/stagings/phoenix").json()
    keys = list(store.redis.scan_iter("binderq:*"))
    store.redis.delete(*keys)
    for server in servers:
        proxy.remove_route(server_path(server["id"]))

    done = subprocess.run([sys.executable, "-m", "binderq.cli", "reconcile", "--adopt"],
                          env=settings.to_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "adopt" in done.stdout

    for server in servers:
        record = store.servers.get(server["id"])
        assert record.status == ServerStatus.READY and record.staging == "phoenix"
        assert answers(server)
    session.put(f"{base}/api/stagings/phoenix", json={
        k: staging[k] for k in ("image", "resources")})  # so the fixture can clean up


@pytest.mark.parametrize("trial", range(10))
def test_a_worker_killed_mid_launch_leaves_one_container_and_a_true_status(
        trial, http, store, clean_runtime, launch_worker, settings):
    base, session = http
    if trial == 0 or session.get(f"{base}/api/stagings/killme").status_code == 404:
        stage(base, session, "killme", resources=SMALL)
    launched = session.post(f"{base}/api/stagings/killme/servers").json()
    wait_for(lambda: store.servers.get(launched["id"]).status == ServerStatus.STARTING,
             timeout=30, what="the launch starts")
    time.sleep(0.05 * trial)  # kill at different moments of the launch
    for child in psutil.Process(launch_worker.pid).children():
        os.kill(child.pid, signal.SIGKILL)  # the pool process running the task dies

    def settled():
        server = store.servers.get(launched["id"])
        return server if server.status in (ServerStatus.READY, ServerStatus.FAILED) else None

    server = wait_for(settled, timeout=120, what="the killed launch settles")
    assert server.status == ServerStatus.READY or server.error, server
    mine = [c for c in clean_runtime.server_containers() if c.server_id == launched["id"]]
    assert len(mine) == (1 if server.status == ServerStatus.READY else 0), mine
    if server.status == ServerStatus.READY:
        assert answers({**launched, "url": server.url})
    session.delete(f"{base}/api/servers/{launched['id']}")
    settle(store)
    assert all(c.server_id != launched["id"] for c in clean_runtime.server_containers())
