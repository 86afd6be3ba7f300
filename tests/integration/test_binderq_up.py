"""`binderq up` as a newcomer runs it: embedded Redis, demo staging, Ctrl-C cleans all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from binderq.processes import free_port
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
