"""`binderq up` as a newcomer runs it: embedded Redis, demo staging, Ctrl-C cleans all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis
import requests

from binderq.cli import Stack, settings_for_up
from binderq.processes import free_port
from binderq.settings import Settings
from tests.integration.conftest import ROOT, wait_for


def test_binderq_up_serves_the_demo_and_ctrl_c_removes_everything(notebook_image, runtime,
                                                                   tmp_path):
    port = free_port()
    instance = f"{runtime.instance}up"
    env = {key: value for key, value in os.environ.items() if not key.startswith("BINDERQ_")}
    env.update(BINDERQ_INSTANCE=instance, BINDERQ_NOTEBOOK_IMAGE=notebook_image)
    log = tmp_path / "up.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "binderq.cli", "up", "--port", str(port), "--demo"],
        env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "binderq is up" in log.read_text() or process.poll() is not None,
                 timeout=120, what="binderq up starts")
        assert process.poll() is None, log.read_text()

        def pool_is_warm():
            stats = requests.get(f"{base}/api/stats", timeout=10).json()  # the tmpnb door
            return stats["available"] == stats["capacity"] == 2

        wait_for(pool_is_warm, timeout=90, what="the demo pool is warm")
        launched = requests.post(f"{base}/api/stagings/notebook/servers", timeout=10)
        assert launched.status_code == 201, launched.text
        server = launched.json()
        assert server["pooled"] and server["status"] == "ready"
        status = requests.get(f"{server['url']}api/status", params={"token": server["token"]},
                              timeout=10)
        assert status.status_code == 200
        assert requests.get(f"{base}/api/health", timeout=10).json()["ok"] is True
        assert firewall_status(instance) == 0, "binderq up as root installs its chain"
        assert_answers_across_idle_sockets(base)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)

    assert "stopping servers" in log.read_text()
    leftover = runtime.client.containers.list(
        all=True, filters={"label": f"binderq.instance={instance}"})
    assert leftover == []
    assert firewall_status(instance) == 3, "and removes it on stop"
    time.sleep(0.5)
    try:
        requests.get(f"{base}/api/health", timeout=2)
        still_serving = True
    except requests.ConnectionError:
        still_serving = False
    assert not still_serving, "the proxy outlived binderq up"


def firewall_status(instance: str) -> int:
    return subprocess.run(["bash", str(ROOT / "deploy/firewall.sh"), "status", instance],
                          capture_output=True).returncode


def assert_answers_across_idle_sockets(base: str) -> None:
    """The proxy keeps idle sockets to the API for 5 s; if the API closed them sooner
    (gunicorn's default keep-alive is 2 s), requests this far apart often hit a closing
    socket and get a 503. tests/unit/test_settings.py guards the setting."""
    for _ in range(6):
        time.sleep(2.0)
        assert requests.get(f"{base}/api/openapi.json", timeout=10).status_code == 200


def test_the_embedded_redis_asks_for_a_password_the_processes_have_and_never_print(
        runtime, tmp_path):
    """`binderq up` gives its embedded Redis a password of its own; the API, both workers
    and beat use it (health is ok, beat sends its schedule); no log and no health answer
    shows it; a client without it is refused."""
    base = Settings(instance=f"{runtime.instance}pw", cull_interval=1.0)
    port = free_port()
    stack = Stack(settings_for_up(base, "127.0.0.1", port), host="127.0.0.1", port=port)
    try:
        stack.start()
        url = stack.settings.redis_url
        password = redis.connection.parse_url(url)["password"]
        assert len(password) >= 32 and url.startswith("redis://:")
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url(url.replace(f":{password}@", "")).ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url(url.replace(password, "wrong" + password[5:])).ping()
        assert redis.Redis.from_url(url).ping()
        health = requests.get(f"{stack.local_url}/api/health", timeout=10)
        assert health.json()["ok"] is True, health.text
        for answer in (health, requests.get(f"{stack.local_url}/health", timeout=10),
                       requests.get(f"{stack.local_url}/api/health", timeout=10, headers={
                           "Authorization": f"token {stack.settings.operator_token}"})):
            assert password not in answer.text
        wait_for(lambda: "binderq.lifecycle" in (stack.run_dir / "beat.log").read_text()
                 or "Sending due task" in (stack.run_dir / "beat.log").read_text(),
                 timeout=30, what="beat sends its schedule through the password")
        processes = [process.pid for _, process in stack.processes]
        assert all(process.poll() is None for _, process in stack.processes), processes
        assert not any(password.encode() in subprocess.run(
            ["ps", "-o", "args=", "-p", str(pid)], capture_output=True).stdout
            for pid in processes), "a command line shows the password"
    finally:
        stack.stop()
    for log_file in stack.run_dir.glob("*.log"):
        assert password not in log_file.read_text(errors="replace"), log_file.name
