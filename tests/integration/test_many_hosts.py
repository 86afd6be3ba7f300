"""Many Docker hosts, for real: two dockerd engines on this machine (the machine's own as
host `a`, a second one started here as host `b`), Debian's docker-registry between them, a
launch worker per host, beat, and the API under gunicorn. Launches land on both hosts, a pool
spans both, and when b's engine stops mid-load: health says b is down within 30 s, no server
on a is lost, launches go on (on a), the pool refills on a, b's servers end `failed` naming b
within 3 minutes; when b comes back, its reconcile removes their containers."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from binderq.adapters.data_dir import prepare_data_dir
from binderq.adapters.redis_store import RedisStore
from binderq.cli import settings_for_up
from binderq.domain.errors import CapacityExceeded
from binderq.domain.hosts import Host
from binderq.domain.models import Server, utcnow
from binderq.domain.spec import container_name
from binderq.processes import free_port, stop_process, wait_until
from binderq.settings import Settings
from binderq.stack import Stack
from tests.integration.conftest import (
    NOTEBOOK_IMAGE,
    OPERATOR,
    SMALL,
    celery_worker,
    forget_binderq_keys,
    gunicorn_api,
    settings_env,
    wait_for,
)
from tests.integration.engines import registry, second_engine

pytestmark = pytest.mark.integration
DEFAULT_ENGINE = "unix:///var/run/docker.sock"


@pytest.fixture(scope="module")
def engine_b():
    with second_engine() as engine:
        yield engine
    assert _has_docker0(), "the second engine deleted the first engine's docker0 bridge"


def _has_docker0() -> bool:
    return subprocess.run(["ip", "link", "show", "docker0"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def image_registry(logs_dir):
    with registry(logs_dir) as address:
        yield address


@pytest.fixture(scope="module")
def hosts_settings(settings, engine_b, image_registry):
    """The session's settings on a Redis database of their own (the session's workers,
    which know one host, must not take these tasks), with hosts a and b."""
    url = settings.redis_url.rsplit("/", 1)[0] + "/7"
    return settings.with_changes(
        redis_url=url, registry=image_registry, max_servers=20,
        docker_hosts=f"a={settings.docker_host or DEFAULT_ENGINE};max=6,"
                     f"b={engine_b.url};max=6")


@pytest.fixture(scope="module")
def hosts_stack(hosts_settings, logs_dir, notebook_image):
    """API, one launch worker per host (each with BINDERQ_WORKER_HOST), a build worker's
    absence being irrelevant here, and beat (upkeep and host loss every 5 s)."""
    client = redis.Redis.from_url(hosts_settings.redis_url)
    client.flushdb()
    with contextlib.ExitStack() as stack:
        for name in ("a", "b"):
            stack.enter_context(celery_worker(
                hosts_settings.with_changes(worker_host=name), f"launches.{name},maintenance",
                logs_dir / f"worker-{name}.log", name=f"launch-{name}-hosts@%h"))
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "binderq.workers.main", "beat", "-s",
             str(logs_dir / "hosts-beat-schedule"), "--loglevel", "INFO"],
            env=settings_env(hosts_settings), stdout=open(logs_dir / "hosts-beat.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True)
        stack.callback(stop_process, beat)
        url = stack.enter_context(gunicorn_api(hosts_settings, logs_dir / "hosts-api.log"))
        session = requests.Session()
        session.headers.update(OPERATOR)
        yield url, session, RedisStore(client)
        for staging in session.get(f"{url}/api/stagings").json():
            session.delete(f"{url}/api/stagings/{staging['name']}?force=true")
        wait_until(lambda: not RedisStore(client).servers.active(), timeout=90,
                   what="every server stops")
    client.flushdb()


def _health(url):
    return requests.get(f"{url}/api/health", headers=OPERATOR, timeout=5).json()


def _launch(url, session):
    answer = session.post(f"{url}/api/stagings/spread/servers")
    assert answer.status_code in (201, 202), answer.text
    return answer.json()["id"]


def _server(url, session, server_id):
    return session.get(f"{url}/api/servers/{server_id}").json()


def _ready(url, session, server_id, timeout=120):
    def settled():
        server = _server(url, session, server_id)
        return server if server["status"] not in ("pending", "starting") else None
    server = wait_for(settled, timeout=timeout, what=f"server {server_id} settles")
    assert server["status"] == "ready", server
    return server


def _binderq_containers(client, instance):
    # sparse: no inspect of each one listed, which fails on a container removed meanwhile
    # (reconcile removes them while this polls).
    return client.containers.list(all=True, sparse=True,
                                  filters={"label": f"binderq.instance={instance}"})


def test_servers_spread_over_two_engines_and_a_lost_engine_loses_only_its_own(
        hosts_stack, hosts_settings, engine_b, image_registry, runtime):
    url, session, store = hosts_stack
    wait_for(lambda: _health(url).get("hosts", {}).get("b", {}).get("ok")
             and _health(url)["hosts"]["a"]["ok"], timeout=30, what="hosts a and b are up")

    # Staging pushes the image (only engine a has it) to the registry.
    session.put(f"{url}/api/stagings/spread", json={
        "image": NOTEBOOK_IMAGE, "resources": SMALL, "public": True}).raise_for_status()
    staging = wait_for(lambda: (s := session.get(f"{url}/api/stagings/spread").json())
                       ["status"] != "staging" and s, timeout=180, what="staging settles")
    assert staging["status"] == "ready", staging

    # Cold launches land on both; b pulls before its first server, and the staging says so.
    cold = [_launch(url, session) for _ in range(2)]
    placed = {server_id: _ready(url, session, server_id) for server_id in cold}
    assert {server["host"] for server in placed.values()} == {"a", "b"}
    pull = session.get(f"{url}/api/stagings/spread").json()["pulls"]["b"]
    assert pull["status"] == "pulled" and pull["images"] == [staging["image_id"]]
    assert engine_b.client().images.get(staging["image_id"]).id == staging["image_id"]
    # Each host runs the staged id, and the server says so (the id is the same on both).
    for server_id, server in placed.items():
        engine = engine_b.client() if server["host"] == "b" else runtime.client
        container = engine.containers.get(container_name(hosts_settings.instance, server_id))
        assert container.attrs["Image"] == server["image_id"] == staging["image_id"]

    # A pool spans both hosts.
    assert session.put(f"{url}/api/pools/spread", json={"size": 2}).status_code == 200
    wait_for(lambda: session.get(f"{url}/api/pools/spread").json()["ready"] == 2,
             timeout=120, what="the pool has 2 ready")
    pooled = [s for s in store.servers.active() if s.pooled and s.claimed_at is None]
    assert sorted(s.host for s in pooled) == ["a", "b"]

    on_a = {s.id for s in store.servers.active() if s.host == "a"}
    on_b = {s.id for s in store.servers.active() if s.host == "b"}

    # Engine b stops answering with servers running on both.
    started = time.monotonic()
    engine_b.freeze()
    down_after = wait_for(lambda: not _health(url)["hosts"]["b"]["ok"]
                          and time.monotonic() - started, timeout=30, what="b shows down")
    public = requests.get(f"{url}/api/health", timeout=5).json()
    assert public["hosts"] == {"a": {"ok": True}, "b": {"ok": False}}

    during = [_launch(url, session) for _ in range(2)]
    assert {_ready(url, session, server_id)["host"] for server_id in during} == {"a"}
    wait_for(lambda: session.get(f"{url}/api/pools/spread").json()["ready"] == 2,
             timeout=90, what="the pool refills on a")
    refilled_after = time.monotonic() - started
    assert all(s.host == "a" for s in store.servers.active()
               if s.pooled and s.claimed_at is None and str(s.status) == "ready")

    def all_failed():
        servers = [store.servers.get(i) for i in on_b]
        return all(str(s.status) == "failed" for s in servers) and servers
    failed = wait_for(all_failed, timeout=180 - (time.monotonic() - started),
                      what="b's servers fail within 3 minutes")
    for server in failed:
        assert server.error.startswith("host b is down"), server.error
    assert all(str(store.servers.get(i).status) == "ready" for i in on_a)
    print(f"\nhost b: down in health after {down_after:.1f} s, its pool share refilled on a "
          f"after {refilled_after:.1f} s, its {len(on_b)} servers failed after "
          f"{time.monotonic() - started:.1f} s")

    # b comes back: its reconcile removes the containers of its failed servers.
    engine_b.thaw()
    wait_for(lambda: _health(url)["hosts"]["b"]["ok"], timeout=30, what="b is up again")
    session.post(f"{url}/api/reconcile").raise_for_status()
    wait_for(lambda: not _binderq_containers(engine_b.client(), hosts_settings.instance),
             timeout=60, what="b's reconcile removes its failed servers' containers")
    assert _launch(url, session)


def test_fifty_concurrent_reservations_never_overfill_a_host(settings):
    """Placement under 50 concurrent launches, on real Redis: each host gets at most its
    capacity, and every launch past them all is refused."""
    client = redis.Redis.from_url(settings.redis_url.rsplit("/", 1)[0] + "/8")
    forget_binderq_keys(client)
    store = RedisStore(client)
    hosts = (Host("a", "unix:///a", 7), Host("b", "unix:///b", 5), Host("c", "unix:///c", 9))
    for host in ("a", "b"):  # c is down: it gets none
        store.hosts.beat(host, [], at=utcnow(), ttl=60)

    def reserve(i):
        try:
            return store.servers.reserve(Server(id=f"s{i}", staging="d", staging_version=1),
                                         100, hosts=hosts)
        except CapacityExceeded:
            return None

    try:
        with ThreadPoolExecutor(max_workers=50) as threads:
            placed = list(threads.map(reserve, range(50)))
        assert placed.count("a") == 7 and placed.count("b") == 5
        assert placed.count(None) == 38 and "c" not in placed
        assert store.servers.host_counts(hosts) == {"a": 7, "b": 5, "c": 0}
    finally:
        forget_binderq_keys(client)


def test_binderq_up_runs_a_registry_and_a_launch_worker_per_host(engine_b, runtime, tmp_path):
    """`binderq up` with two hosts and no registry named: it starts Debian's registry on
    loopback (its images in the data directory) and a launch worker per host, each on its
    host's queue; health shows both hosts up; everything stops at the end."""
    base = Settings(instance=f"{runtime.instance}up2",
                    docker_hosts=f"a={DEFAULT_ENGINE},b={engine_b.url}")
    port = free_port()
    stack = Stack(settings_for_up(base, "127.0.0.1", port), host="127.0.0.1", port=port,
                  data_dir=prepare_data_dir(tmp_path / "data"))
    try:
        stack.start()
        names = [name for name, _ in stack.processes]
        assert {"registry", "worker-launch-a", "worker-launch-b", "worker-build"} <= set(names)
        registry_address = stack.settings.registry
        assert registry_address.startswith("127.0.0.1:")
        assert requests.get(f"http://{registry_address}/v2/", timeout=5).status_code == 200
        assert (tmp_path / "data" / "registry").is_dir()
        health = wait_for(lambda: (h := requests.get(
            f"{stack.local_url}/api/health", timeout=5, headers={
                "Authorization": f"token {stack.settings.operator_token}"}).json())
            ["hosts"]["a"]["ok"] and h["hosts"]["b"]["ok"] and h, timeout=30,
            what="both hosts up")
        assert health["checks"]["hosts"] == {"ok": True, "up": ["a", "b"], "down": []}
        for host in "ab":
            log = (stack.run_dir / f"worker-launch-{host}.log").read_text()
            assert f"launches.{host}" in log, log[-2000:]
    finally:
        stack.stop()
    assert all(process.poll() is not None for _, process in stack.processes)
