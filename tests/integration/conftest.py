"""Real services for integration tests: redis-server, configurable-http-proxy, dockerd, and
real Celery workers. dockerd must be running (.ci/run starts it); the rest start here, on
free loopback ports, and everything a test makes is removed at the end. The helpers the
integration tests share (wait_for, stage, fill_pool, make_repo ...) are here too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import pytest
import redis
import requests
import websocket

from binderq.adapters.build_cgroup import sweep_build_cgroups
from binderq.adapters.chp_proxy import ChpProxy
from binderq.adapters.docker_runtime import DockerRuntime
from binderq.adapters.redis_store import RedisStore
from binderq.adapters.task_queue import CeleryTaskQueue
from binderq.bootstrap import build_celery, create_wsgi_app
from binderq.cli import WSGI_APP, gunicorn_command
from binderq.domain.models import ServerStatus
from binderq.processes import free_port, start_proxy, start_redis, stop_process, wait_until
from binderq.settings import Settings
from binderq.stack import LAUNCH_POOL
from binderq.tasks import LAUNCHES

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_IMAGE = os.environ.get("BINDERQ_NOTEBOOK_IMAGE", "binderq/notebook:bookworm")
OPERATOR_TOKEN = "integration-operator"
OPERATOR = {"Authorization": f"token {OPERATOR_TOKEN}"}
# Small limits, so that many notebooks fit on a CI machine.
SMALL = {"memory": "192m", "cpus": 1.0, "pids": 128}


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_url(logs_dir):
    port = free_port()
    process = start_redis(port, log_file=logs_dir / "redis.log")
    yield f"redis://127.0.0.1:{port}/0"
    stop_process(process)


@pytest.fixture(scope="session")
def proxy_ports(logs_dir):
    port, api_port, token = free_port(), free_port(), secrets.token_hex(16)
    process = start_proxy(port, api_port, token, log_file=logs_dir / "proxy.log")
    ports = {"port": port, "api_port": api_port, "token": token, "process": process}
    yield ports
    stop_process(ports["process"])  # a test may have restarted it


@pytest.fixture(scope="session")
def instance() -> str:
    """Labels and names every container and network of this test run."""
    return f"bqtest{secrets.token_hex(3)}"


@pytest.fixture(scope="session", autouse=True)
def firewall(instance) -> str:
    """binderq's firewall chain (deploy/firewall.sh), as production runs it, for the whole
    session: containers on binderq's bridges and docker0 reach no host service. Removed at
    the end; its name is returned."""
    script = ["bash", str(ROOT / "deploy/firewall.sh")]
    subprocess.run([*script, "install", instance], check=True, capture_output=True)
    yield f"BINDERQ-{instance}"[:28]
    subprocess.run([*script, "remove", instance], check=True, capture_output=True)


@pytest.fixture(scope="session", autouse=True)
def build_cgroups_swept():
    """The session's builds leave no pids cgroup: one a killed worker could not release
    (tests kill builds workers) is swept at the end, as a later build would sweep it."""
    yield
    sweep_build_cgroups(older_than=0)


@pytest.fixture(scope="session")
def settings(redis_url, proxy_ports, instance) -> Settings:
    return Settings(
        redis_url=redis_url,
        public_url=f"http://127.0.0.1:{proxy_ports['port']}",
        proxy_api_url=f"http://127.0.0.1:{proxy_ports['api_port']}",
        proxy_api_token=proxy_ports["token"],
        operator_token=OPERATOR_TOKEN,
        secret_key=secrets.token_hex(16),
        instance=instance,
        max_servers=24,
        launch_timeout=60,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess these settings."""
    return settings.to_env()


@pytest.fixture(scope="session")
def runtime(instance) -> DockerRuntime:
    runtime = DockerRuntime(instance=instance)
    runtime.ping()  # no skip: CI provides dockerd, and a missing engine must fail loudly
    yield runtime
    runtime.remove_instance()


@pytest.fixture(scope="session")
def notebook_image(runtime) -> str:
    if runtime.image(NOTEBOOK_IMAGE) is None:
        subprocess.run(["bash", str(ROOT / "deploy/build-notebook-image.sh"), NOTEBOOK_IMAGE],
                       check=True)
    return NOTEBOOK_IMAGE


def forget_binderq_keys(client: redis.Redis) -> None:
    """Remove binderq's records but not Celery's queues, which a running worker uses."""
    keys = list(client.scan_iter("binderq:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def store(settings) -> RedisStore:
    client = redis.Redis.from_url(settings.redis_url)
    forget_binderq_keys(client)
    yield RedisStore(client, record_ttl=settings.record_ttl)
    forget_binderq_keys(client)


@pytest.fixture
def proxy(settings) -> ChpProxy:
    proxy = ChpProxy(settings.proxy_api_url, settings.proxy_api_token)
    before = set(proxy.routes())
    yield proxy
    for path in set(proxy.routes()) - before:
        proxy.remove_route(path)


@pytest.fixture
def clean_runtime(runtime):
    """The runtime, with every container and network of this run removed after the test."""
    yield runtime
    runtime.remove_instance()


@pytest.fixture(scope="session")
def launch_worker(settings, logs_dir):
    """A real Celery worker on the launches and maintenance queues."""
    with celery_worker(settings, "launches.local,maintenance", logs_dir / "worker.log",
                       name=f"launch-{settings.instance}@%h") as process:
        yield process


@contextlib.contextmanager
def celery_worker(settings: Settings, queues: str, log_path: Path, *, name: str,
                  concurrency: int | None = None) -> Iterator[subprocess.Popen]:
    """A real Celery worker on queues, answering pings; stopped on exit. A launch worker
    (a host's queue) runs as `binderq up` runs it: threads, as many as the settings say."""
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "binderq.workers.main", "worker",
         "-Q", queues, *worker_pool(queues, concurrency), "--loglevel", "INFO",
         "--hostname", name, "--without-mingle", "--without-gossip"],
        env=settings_env(settings), stdout=open(log_path, "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    celery = build_celery(settings)
    queue = CeleryTaskQueue(celery, RedisStore(redis.Redis.from_url(settings.redis_url)))

    def answers() -> bool:
        try:
            queue.ping_worker(queues.split(",")[0], timeout=1)
            return True
        except Exception:
            return process.poll() is not None  # stop waiting on a crashed worker

    try:
        wait_until(answers, timeout=60, what=f"the worker on {queues}")
        assert process.poll() is None, log_path.read_text()[-3000:]
        yield process
    finally:
        stop_process(process, timeout=20)


def worker_pool(queues: str, concurrency: int | None) -> list[str]:
    """The pool options of a worker on queues (stack.worker_processes' for a launch worker)."""
    given = ["--concurrency", str(concurrency)] if concurrency else []
    if queues.startswith(f"{LAUNCHES}."):
        return [*LAUNCH_POOL, *given]
    return given or ["--concurrency", "1"]


def remove_built_images(runtime: DockerRuntime, instance: str) -> None:
    """Remove the instance's servers, then every image its builds made (servers first: they
    hold their image); fail naming any image that stays."""
    runtime.remove_instance()
    left = []
    for image in runtime.client.images.list(filters={"label": f"binderq.instance={instance}"}):
        try:
            runtime.client.images.remove(image.id, force=True)
        except docker.errors.NotFound:
            pass  # a tag of one removed just before
        except docker.errors.APIError as error:
            left.append(f"{image.tags}: {error}")
    assert not left, f"built images could not be removed: {left}"


@pytest.fixture(scope="session")
def api_url(settings, logs_dir):
    """The API under real gunicorn, as production runs it."""
    with gunicorn_api(settings, logs_dir / "gunicorn.log") as url:
        yield url


@contextlib.contextmanager
def gunicorn_api(settings: Settings, log_path: Path) -> Iterator[str]:
    """The API under real gunicorn with settings; its URL; stopped on exit."""
    port = free_port()
    process = subprocess.Popen(
        gunicorn_command(WSGI_APP, f"127.0.0.1:{port}"),
        env=settings_env(settings), stdout=open(log_path, "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return requests.get(f"{url}/api/openapi.json", timeout=1).status_code == 200
        except requests.RequestException:
            return process.poll() is not None

    try:
        wait_until(answers, timeout=30, what="gunicorn")
        assert process.poll() is None, log_path.read_text()[-3000:]
        yield url
    finally:
        stop_process(process)


@pytest.fixture
def api(settings, store, proxy, clean_runtime, launch_worker):
    """The real API app (real Redis, real Celery queue) as a test client."""
    app = create_wsgi_app(settings)
    return app.test_client()


@pytest.fixture
def http(api_url, store, proxy, clean_runtime, launch_worker):
    """requests against the API under gunicorn; afterwards every server of the test stops."""
    session = requests.Session()
    session.headers.update({"Authorization": f"token {OPERATOR_TOKEN}"})
    yield api_url, session
    for staging in session.get(f"{api_url}/api/stagings").json():
        session.delete(f"{api_url}/api/stagings/{staging['name']}?force=true")
    try:
        wait_for(lambda: not store.servers.active(), timeout=90, what="every server stops")
    except AssertionError as error:
        stuck = [(s.id, str(s.status), s.error) for s in store.servers.active()]
        raise AssertionError(f"{error}; still active: {stuck}") from error


def wait_for(condition, *, timeout: float, what: str):
    """Poll condition until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout:g} s")


# -- helpers the tests share ---------------------------------------------------------------


def pinned(staging):
    """The staging as its stage task leaves it, for tests that make server specs by hand:
    its images pinned (here by the references they name, which no test moves)."""
    return dataclasses.replace(staging, image_id=staging.image, service_image_ids={
        service.name: service.image for service in staging.services})


def stage(base, session, name, **fields):
    """PUT a small staging of the notebook image through the API under gunicorn; wait for
    it to be ready."""
    session.put(f"{base}/api/stagings/{name}", json={
        "image": NOTEBOOK_IMAGE, "resources": SMALL, **fields}).raise_for_status()
    wait_for(lambda: session.get(f"{base}/api/stagings/{name}").json()["status"] == "ready",
             timeout=30, what=f"staging {name} is ready")


def stage_in_app(api, name, *, timeout: float = 60, **fields):
    """PUT a staging through the app's test client; the staging once ready or failed."""
    response = api.put(f"/api/stagings/{name}", json=fields, headers=OPERATOR)
    assert response.status_code == 202, response.get_json()

    def settled():
        staging = api.get(f"/api/stagings/{name}", headers=OPERATOR).get_json()
        return staging if staging["status"] != "staging" else None

    return wait_for(settled, timeout=timeout, what=f"staging {name} settles")


def launch_settled(base, session, name, timeout=120):
    """POST a launch of staging name and wait until the server is no longer pending or
    starting; the server, with the launch answer's token and kind (`launch_kind`)."""
    launched = session.post(f"{base}/api/stagings/{name}/servers").json()

    def settled():
        server = session.get(f"{base}/api/servers/{launched['id']}").json()
        return server if server["status"] not in ("pending", "starting") else None

    server = wait_for(settled, timeout=timeout, what=f"server {launched['id']} settles")
    return {**server, "token": launched["token"], "launch_kind": launched["kind"]}


def fill_pool(base, session, name, size, timeout=180):
    """Set a pool's size through the API; the pool once it has size servers ready."""
    assert session.put(f"{base}/api/pools/{name}", json={"size": size}).status_code == 200
    return wait_for(lambda: pool_full(session.get(f"{base}/api/pools/{name}").json(), size),
                    timeout=timeout, what=f"pool {name} has {size} ready")


def pool_full(pool, size):
    """The pool if it has size servers ready and none starting, else None."""
    return pool if pool["ready"] == size and pool["starting"] == 0 else None


def settle(store, timeout=120):
    """Wait until no server is pending, starting or stopping."""
    def settled():
        return all(s.status not in (ServerStatus.PENDING, ServerStatus.STARTING,
                                    ServerStatus.STOPPING) for s in store.servers.list())
    wait_for(settled, timeout=timeout, what="every server settles")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def init_repo(path: Path) -> Path:
    """An empty git repository at path, on branch main, with a committer set."""
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch", "main")
    git(path, "config", "user.email", "t@binderq.invalid")
    git(path, "config", "user.name", "t")
    return path


def make_repo(root: Path, name: str, files: dict[str, str | bytes]) -> str:
    """A git repository with files committed on main; its file:// URL."""
    path = init_repo(root / name)
    for relative, text in files.items():
        (path / relative).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            (path / relative).write_bytes(text)
        else:
            (path / relative).write_text(text)
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "environment")
    return f"file://{path}"


def run_code(url: str, token: str, kernel: str, code: str, timeout: float = 60,
             origin: str | None = None) -> str:
    """Run code on a kernel over its channels websocket (as a page of origin would, when
    given); what it printed."""
    channels = url.replace("http://", "ws://", 1) + f"api/kernels/{kernel}/channels"
    connection = websocket.create_connection(
        channels, timeout=timeout, header=[f"Authorization: token {token}"],
        **({"origin": origin} if origin else {}))
    msg_id = uuid.uuid4().hex
    connection.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
    printed, deadline = "", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = json.loads(connection.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "stream":
                printed += message["content"]["text"]
            if message["msg_type"] == "status" and \
                    message["content"]["execution_state"] == "idle":
                return printed
    finally:
        connection.close()
    raise AssertionError(f"the kernel did not finish within {timeout:g} s")
