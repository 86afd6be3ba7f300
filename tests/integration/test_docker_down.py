"""With the Docker engine unreachable: health says so within 2 s, launches fail clearly.

A worker whose DOCKER_HOST names a socket nobody listens on stands in for a stopped dockerd
(issue 5's fault tests stop the real one); its Redis database is its own.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis

from binderq.adapters.redis_store import RedisStore
from binderq.bootstrap import create_wsgi_app
from binderq.domain.models import Staging, StagingStatus
from binderq.processes import stop_process
from tests.integration.conftest import (
    OPERATOR,
    forget_binderq_keys,
    pinned,
    settings_env,
    wait_for,
    worker_pool,
)


@pytest.fixture(scope="module")
def blind_settings(settings):
    return settings.with_changes(redis_url=settings.redis_url.rsplit("/", 1)[0] + "/1",
                                 docker_host="unix:///nonexistent/docker.sock")


@pytest.fixture(scope="module")
def blind_worker(blind_settings, logs_dir):
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "binderq.workers.main", "worker",
         "-Q", "launches.local", *worker_pool("launches.local", 1), "--without-mingle",
         "--without-gossip",
         "--hostname", "blind@%h"],
        env=settings_env(blind_settings), stdout=open(logs_dir / "blind.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT, start_new_session=True)
    yield process
    stop_process(process, timeout=20)


@pytest.fixture
def blind_api(blind_settings, blind_worker, proxy):
    client = redis.Redis.from_url(blind_settings.redis_url)
    forget_binderq_keys(client)
    store = RedisStore(client)
    # Staged while the engine was up: the staging is ready, the engine has since gone.
    store.stagings.save(pinned(Staging(name="demo", image="binderq/notebook:bookworm",
                                       status=StagingStatus.READY, version=1)))
    yield create_wsgi_app(blind_settings).test_client()
    forget_binderq_keys(client)


def test_health_is_503_within_2_s_naming_docker(blind_api):
    wait_for(lambda: blind_api.get("/api/health").get_json()["checks"]["workers"]["ok"],
             timeout=60, what="the worker answers its canary")
    started = time.monotonic()
    response = blind_api.get("/api/health", headers=OPERATOR)  # the operator sees why
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["docker"]["ok"] is False and "Docker engine" in checks["docker"]["error"]
    assert blind_api.get("/api/health").get_json()["checks"]["docker"] == {"ok": False}
    assert checks["redis"]["ok"] and checks["workers"]["ok"]
    assert elapsed < 2, elapsed


def test_a_launch_ends_failed_with_a_clear_error(blind_api):
    response = blind_api.post("/api/stagings/demo/servers", headers=OPERATOR)
    assert response.status_code == 202
    server_id = response.get_json()["id"]

    def failed():
        server = blind_api.get(f"/api/servers/{server_id}", headers=OPERATOR).get_json()
        return server if server["status"] == "failed" else None

    server = wait_for(failed, timeout=30, what="the launch fails")
    assert "Docker engine is unreachable" in server["error"]
