"""`binderq up` as a newcomer runs it: embedded Redis, demo staging, Ctrl-C cleans all."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis
import requests

from binderq.adapters.docker_runtime import DockerRuntime
from binderq.cli import Stack, settings_for_up
from binderq.processes import free_port
from binderq.settings import Settings
from tests.integration.conftest import ROOT, wait_for


def test_binderq_up_serves_the_demo_and_ctrl_c_removes_everything(notebook_image, runtime,
                                                                   tmp_path):
    port = free_port()
    instance = f"{runtime.instance}up"
    env = {key: value for key, value in os.environ.items() if not key.startswith("BINDERQ_")}
    env.update(BINDERQ_INSTANCE=instance, BINDERQ_NOTEBOOK_IMAGE=notebook_image,
               XDG_RUNTIME_DIR=str(tmp_path))
    log = tmp_path / "up.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "binderq.cli", "up", "--port", str(port), "--demo",
         "--data-dir", str(tmp_path / "data"), "--flower"],
        env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "binderq is up" in log.read_text() or process.poll() is not None,
                 timeout=120, what="binderq up starts")
        assert process.poll() is None, log.read_text()
        (flower,) = re.findall(r"Flower: +(http://127\.0\.0\.1:\d+/)", log.read_text())
        assert "Flower" in wait_for(lambda: _page(flower), timeout=30, what="Flower answers")
        assert "<form" in requests.get(f"{base}/", timeout=10).text  # the launch page

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
    assert _page(flower) is None, "Flower outlived binderq up"


def _page(url: str) -> str | None:
    try:
        answer = requests.get(url, timeout=5)
    except requests.ConnectionError:
        return None
    return answer.text if answer.ok else None


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


# -- two deployments, a supervisor, and a memory (issue 11) --------------------------------


class Up:
    """One real `binderq up` process, stopped (SIGTERM) at the end of the test."""

    def __init__(self, instance: str, port: int, data_dir, log, *options: str) -> None:
        self.instance, self.port, self.log = instance, port, log
        self.base = f"http://127.0.0.1:{port}"
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("BINDERQ_")}
        # Leases of one test in one folder of its own: deployments of one test meet there.
        env.update(BINDERQ_INSTANCE=instance, PYTHONPATH=str(ROOT / "src"),
                   XDG_RUNTIME_DIR=str(Path(data_dir).parent))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "binderq.cli", "up", "--port", str(port),
             "--data-dir", str(data_dir), *options],
            env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self) -> Up:
        wait_for(lambda: "binderq is up" in self.text() or self.process.poll() is not None,
                 timeout=120, what=f"binderq up on port {self.port} starts")
        assert self.process.poll() is None, self.text()
        return self

    def wait_exit(self, timeout: float = 120) -> int:
        return self.process.wait(timeout=timeout)

    @property
    def operator(self) -> dict[str, str]:
        token = next(line.split(":", 1)[1].strip() for line in self.text().splitlines()
                     if "operator token:" in line)
        return {"Authorization": f"token {token}"}

    def children(self) -> dict[str, int]:
        """name -> pid of binderq up's direct children, from their command lines."""
        found = {}
        for pid in subprocess.run(["pgrep", "-P", str(self.process.pid)],
                                  capture_output=True, text=True).stdout.split():
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except FileNotFoundError:
                continue  # it ended after pgrep listed it (a killed child being reaped)
            for name, mark in (("worker-launch-local", "launch-local@"), ("proxy", "http-proxy"),
                               ("web", "gunicorn"), ("redis", "redis-server")):
                if mark in args:
                    found[name] = int(pid)
        return found

    def launch(self, staging: str = "nb") -> dict:
        launched = requests.post(f"{self.base}/api/stagings/{staging}/servers",
                                 headers=self.operator, timeout=10)
        assert launched.status_code in (201, 202), launched.text
        server = launched.json()

        def ready():
            now = requests.get(f"{self.base}/api/servers/{server['id']}",
                               headers=self.operator, timeout=10).json()
            return now if now["status"] == "ready" else None

        return {**wait_for(ready, timeout=90, what="the server is ready"),
                "token": server["token"]}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=90)


def reachable(server: dict) -> bool:
    try:
        return requests.get(f"{server['url']}api/status", params={"token": server["token"]},
                            timeout=10).status_code == 200
    except requests.RequestException:
        return False


def stage_notebook(up: Up, image: str) -> None:
    up_session = requests.Session()
    up_session.headers.update(up.operator)
    up_session.put(f"{up.base}/api/stagings/nb", json={
        "image": image, "resources": {"memory": "256m", "cpus": 0.5}}).raise_for_status()
    wait_for(lambda: up_session.get(f"{up.base}/api/stagings/nb").json()["status"] == "ready",
             timeout=30, what="staging nb is ready")


def ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


def held_ports(up: Up) -> list[int]:
    return [conn.laddr.port for pid in up.children().values()
            for conn in psutil.Process(pid).net_connections() if conn.status == "LISTEN"]


@pytest.fixture
def instances(runtime):
    """Instance names for this test; their containers and firewall chains go at the end."""
    made: list[str] = []

    def new(suffix: str) -> str:
        made.append(f"{runtime.instance}{suffix}")
        return made[-1]

    yield new
    for instance in made:
        DockerRuntime(instance=instance).remove_instance()
        subprocess.run(["bash", str(ROOT / "deploy/firewall.sh"), "remove", instance],
                       capture_output=True)


def test_a_second_up_takes_neither_the_port_nor_the_instance_and_a_killed_up_lets_go(
        notebook_image, instances, tmp_path):
    instance, port = instances("dup"), free_port()
    first = Up(instance, port, tmp_path / "data", tmp_path / "first.log").wait_up()
    try:
        stage_notebook(first, notebook_image)
        server = first.launch()
        assert reachable(server)

        busy = Up(instances("dup2"), port, tmp_path / "busy", tmp_path / "busy.log")
        assert busy.wait_exit() != 0
        assert f"port {port}:" in busy.text() and "binderq is up" not in busy.text()
        assert reachable(server), "the first's server lives on"
        assert requests.get(f"{first.base}/api/health", timeout=10).json()["ok"] is True

        same = Up(instance, free_port(), tmp_path / "same", tmp_path / "same.log")
        assert same.wait_exit(timeout=30) != 0
        assert (f"instance {instance!r} on this Docker engine is owned by binderq up pid "
                f"{first.process.pid} (ports {port}/") in same.text()
        assert reachable(server) and "binderq is up" not in same.text()

        ports = held_ports(first)
        assert port in ports and len(ports) >= 4
        first.process.send_signal(signal.SIGKILL)
        first.wait_exit(timeout=10)
        wait_for(lambda: ports_free(ports), timeout=10,
                 what=f"no child of the killed binderq up keeps a port of {ports}")

        second = Up(instance, port, tmp_path / "data", tmp_path / "second.log").wait_up()
        try:
            wait_for(lambda: reachable(server), timeout=30,
                     what="the server that outlived the kill is routed again")
            assert requests.get(f"{second.base}/api/servers/{server['id']}",
                                headers=second.operator, timeout=10).json()["status"] == "ready"
        finally:
            second.stop()
    finally:
        first.process.kill()
        first.wait_exit()


def test_a_killed_launch_worker_comes_back_and_servers_live_on(notebook_image, instances,
                                                              tmp_path):
    up = Up(instances("crash"), free_port(), tmp_path / "data", tmp_path / "up.log").wait_up()
    try:
        stage_notebook(up, notebook_image)
        server = up.launch()
        worker = up.children()["worker-launch-local"]
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: up.children().get("worker-launch-local") not in (None, worker),
                 timeout=30, what="the launch worker is started again")
        assert "worker-launch-local was killed by signal 9 (SIGKILL); restarting it" in up.text()
        assert up.process.poll() is None and reachable(server)
        another = up.launch()
        assert reachable(another) and reachable(server)

        proxy = up.children()["proxy"]
        os.kill(proxy, signal.SIGKILL)
        wait_for(lambda: reachable(server), timeout=30,
                 what="the restarted proxy routes the server again")
    finally:
        up.stop()
    assert up.process.returncode == 0 and "stopping servers" in up.text()


def test_a_child_that_keeps_dying_stops_the_deployment_and_leaves_servers_running(
        notebook_image, instances, tmp_path):
    up = Up(instances("giveup"), free_port(), tmp_path / "data", tmp_path / "up.log").wait_up()
    try:
        stage_notebook(up, notebook_image)
        server = up.launch()
        for _ in range(5):
            beat = wait_for(lambda: _beat(up), timeout=60, what="beat runs (again)")
            os.kill(beat, signal.SIGKILL)
            time.sleep(0.2)
        assert up.wait_exit(timeout=90) == 1
        assert "beat died 5 times within 60 s" in up.text()
        assert "stopping servers" not in up.text()
        container = DockerRuntime(instance=up.instance).server_containers()
        assert [c.server_id for c in container if c.running] == [server["id"]]
    finally:
        up.stop()


def _beat(up: Up) -> int | None:
    for pid in subprocess.run(["pgrep", "-P", str(up.process.pid), "-f", "celery.* beat"],
                              capture_output=True, text=True).stdout.split():
        return int(pid)
    return None


def test_stagings_and_tokens_survive_a_restart_and_fresh_starts_empty(notebook_image,
                                                                      instances, tmp_path):
    instance, port, data = instances("data"), free_port(), tmp_path / "data"
    up = Up(instance, port, data, tmp_path / "1.log").wait_up()
    try:
        stage_notebook(up, notebook_image)
        issued = requests.post(f"{up.base}/api/tokens", json={"scopes": ["build"]},
                               headers=up.operator, timeout=10).json()["token"]
        operator = up.operator
    finally:
        up.stop()
    assert stat.S_IMODE((data / "secrets.json").stat().st_mode) == 0o600
    password = json.loads((data / "secrets.json").read_text())["redis_password"]
    assert password not in up.text()

    again = Up(instance, port, data, tmp_path / "2.log").wait_up()
    try:
        assert again.operator == operator, "the operator token is kept"
        staging = requests.get(f"{again.base}/api/stagings/nb", headers=operator, timeout=10)
        assert staging.status_code == 200 and staging.json()["status"] == "ready"
        assert requests.get(f"{again.base}/api/builds", timeout=10, headers={
            "Authorization": f"token {issued}"}).status_code == 200, "the issued token works"
    finally:
        again.stop()

    fresh = Up(instance, port, data, tmp_path / "3.log", "--fresh").wait_up()
    try:
        assert requests.get(f"{fresh.base}/api/stagings/nb", headers=operator,
                            timeout=10).status_code == 404
        assert requests.get(f"{fresh.base}/api/builds", timeout=10, headers={
            "Authorization": f"token {issued}"}).status_code == 401
    finally:
        fresh.stop()
