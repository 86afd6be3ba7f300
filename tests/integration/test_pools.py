"""Pools on the real stack: gunicorn, Celery workers, Redis, dockerd, real notebooks."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from binderq.adapters.redis_store import Keys
from binderq.bootstrap import build_celery
from binderq.domain.models import ServerStatus
from tests.integration.conftest import (
    NOTEBOOK_IMAGE,
    OPERATOR,
    SMALL,
    fill_pool,
    pool_full,
    settle,
    stage,
    wait_for,
)


def test_claim_race_hands_out_each_pooled_server_once_and_accounts_for_all(
        http, store, clean_runtime, settings):
    base, session = http
    stage(base, session, "race")
    fill_pool(base, session, "race", 20)

    def launch(_):
        response = requests.post(f"{base}/api/stagings/race/servers", headers=OPERATOR,
                                 timeout=30)
        return response.status_code, response.json(), response.headers.get("Retry-After")

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(launch, range(200)))

    statuses = Counter(code for code, _, _ in answers)
    assert statuses[201] == 20, statuses
    assert set(statuses) <= {201, 202, 429}, statuses
    assert all(retry for code, _, retry in answers if code == 429)
    launched = [body for code, body, _ in answers if code in (201, 202)]
    assert len({body["id"] for body in launched}) == len(launched)
    assert len({body["token"] for body in launched}) == len(launched)
    assert all(body["pooled"] and body["status"] == "ready" and body["url"]
               for code, body, _ in answers if code == 201)

    settle(store)
    records = {server.id: server for server in store.servers.list()}
    for body in launched:
        server = records[body["id"]]
        in_use = server.status == ServerStatus.READY and (server.claimed_at or not server.pooled)
        assert in_use or (server.status == ServerStatus.FAILED and server.error), server
    for server in records.values():
        waiting = server.pooled and server.claimed_at is None and \
            server.status == ServerStatus.READY
        handed_out = server.id in {body["id"] for body in launched}
        ended = server.status == ServerStatus.STOPPED or (
            server.status == ServerStatus.FAILED and server.error)
        assert waiting or handed_out or ended, server
    running = {c.server_id for c in clean_runtime.server_containers()}
    active = {s.id for s in records.values() if s.status == ServerStatus.READY}
    assert running == active
    assert len(active) <= settings.max_servers


def test_a_replenish_storm_fills_the_pool_exactly_and_never_above(http, store, settings):
    base, session = http
    stage(base, session, "storm")
    store.pools.set_size("storm", 3)  # no upkeep queued yet: the storm is all of it
    celery = build_celery(settings)
    for _ in range(20):
        celery.send_task("binderq.pools.replenish", args=["storm"])

    most = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pooled = [s for s in store.servers.active() if s.staging == "storm" and s.pooled]
        most = max(most, len(pooled))
        if sum(s.status == ServerStatus.READY for s in pooled) == 3:
            break
        time.sleep(0.05)
    assert most <= 3
    time.sleep(2)  # late replenishes of the storm must not add more
    pool = session.get(f"{base}/api/pools/storm").json()
    assert (pool["ready"], pool["starting"]) == (3, 0)
    assert len([s for s in store.servers.list() if s.staging == "storm"]) == 3


def test_a_dead_pooled_container_is_replaced_and_never_handed_out(
        http, store, clean_runtime, settings):
    base, session = http
    stage(base, session, "mortal")
    fill_pool(base, session, "mortal", 2)
    victim = store.redis.lindex(Keys.POOL_READY.format(staging="mortal"), 0).decode()
    clean_runtime.client.containers.get(f"{settings.instance}-{victim}").kill()
    build_celery(settings).send_task("binderq.pools.replenish", args=["mortal"])

    def replaced():
        victim_status = store.servers.get(victim).status
        pool = session.get(f"{base}/api/pools/mortal").json()
        return victim_status == ServerStatus.STOPPED and pool_full(pool, 2)

    wait_for(replaced, timeout=90, what="the dead server is replaced")
    assert "container is not running" in store.servers.get(victim).error
    claimed = [session.post(f"{base}/api/stagings/mortal/servers").json() for _ in range(2)]
    assert victim not in {server["id"] for server in claimed}
    for server in claimed:
        status = requests.get(f"{server['url']}api/status", params={"token": server["token"]},
                              timeout=10)
        assert status.status_code == 200


def test_after_a_staging_update_no_launch_gets_the_old_version(
        http, store, clean_runtime, settings):
    base, session = http
    stage(base, session, "roll", env={"EDITION": "1"})
    fill_pool(base, session, "roll", 2)
    old_ids = {s.id for s in store.servers.active() if s.staging == "roll"}
    session.put(f"{base}/api/stagings/roll", json={
        "image": NOTEBOOK_IMAGE, "resources": SMALL, "env": {"EDITION": "2"}})
    right_after = session.post(f"{base}/api/stagings/roll/servers")
    assert right_after.status_code != 201 or right_after.json()["id"] not in old_ids

    fill_pool(base, session, "roll", 2)
    launch = session.post(f"{base}/api/stagings/roll/servers")
    assert launch.status_code == 201
    server_id = launch.json()["id"]
    assert server_id not in old_ids
    container = clean_runtime.client.containers.get(f"{settings.instance}-{server_id}")
    assert "EDITION=2" in container.attrs["Config"]["Env"]
    wait_for(lambda: all(store.servers.get(i).status == ServerStatus.STOPPED for i in old_ids),
             timeout=60, what="the old version's servers stop")


def test_an_unclaimed_server_opens_to_no_one(http, store, settings):
    base, session = http
    stage(base, session, "sealed")
    fill_pool(base, session, "sealed", 1)
    (waiting,) = [s for s in store.servers.active() if s.staging == "sealed"]
    assert requests.get(f"{waiting.url}api/status", timeout=10).status_code == 403
    assert requests.get(f"{waiting.url}api/contents", timeout=10,
                        params={"token": "guess"}).status_code == 403
