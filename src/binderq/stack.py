"""The processes of one `binderq up`: started in order, each port checked to be served
by its own child, kept running by a supervisor, stopped in reverse."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from binderq.adapters.data_dir import StoredSecrets, redis_dir
from binderq.adapters.instance_lease import Lease
from binderq.api.deployment_proof import CHALLENGE_HEADER, PROOF_HEADER, deployment_proof
from binderq.domain.errors import BinderqError
from binderq.domain.spec import deployment_id
from binderq.flower import FLOWER_PORT, flower_options
from binderq.processes import (
    PortTaken,
    free_port,
    parent_death_signal,
    port_is_free,
    redis_url_with_password,
    start_proxy,
    start_redis,
    start_registry,
    stop_process,
    wait_until,
)
from binderq.settings import Settings
from binderq.supervisor import Child, Supervisor, exit_reason, log_tail
from binderq.tasks import BUILDS, MAINTENANCE

API_PATHS = ("/api", "/build", "/health", "/metrics")
WSGI_APP = "binderq.bootstrap:create_wsgi_app()"
CELERY_APP = "binderq.workers.main"
BUILD_WORKER = "worker-build"
LAUNCH_WORKER_PREFIX = "worker-launch-"


# A launch waits on the engine and the notebook nearly all its time: a thread each, as many
# as BINDERQ_LAUNCH_CONCURRENCY (the app's worker_concurrency). Celery enforces no time
# limits in a thread pool; every step of a launch has its own deadline (docs/operations.md).
# Builds keep a process (--concurrency 1): their soft time limit ends a build `failed`.
LAUNCH_POOL = ("--pool", "threads")


def worker_processes(settings: Settings) -> dict[str, tuple[str, ...]]:
    """The workers, as `binderq up` runs them: one launch worker per Docker host (its
    queue, and maintenance; BINDERQ_WORKER_HOST tells it which engine is its own, as
    worker_hosts says), and one build worker (tests/unit/test_procfile.py: the Procfile
    agrees for the default host)."""
    workers = {f"{LAUNCH_WORKER_PREFIX}{host.name}": (
        "-Q", f"{host.queue},{MAINTENANCE}", *LAUNCH_POOL, "-n", f"launch-{host.name}@%h")
        for host in settings.hosts}
    workers[BUILD_WORKER] = ("-Q", BUILDS, "--concurrency", "1", "-n", "build@%h")
    return workers


def worker_host(process: str) -> str:
    """The host a worker process owns ("" for the build worker: the first host)."""
    return process.removeprefix(LAUNCH_WORKER_PREFIX) \
        if process.startswith(LAUNCH_WORKER_PREFIX) else ""


# The Procfile's workers (one host, `local`).
WORKER_PROCESSES = worker_processes(Settings())
DEMO_STAGING = "notebook"
REGISTRY_DIR = "registry"  # the embedded registry's images, in the data directory
# binderq's iptables chain for br-+ and docker0 (docs/security.md).
FIREWALL_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "firewall.sh"
DEMO_POOL_SIZE = 2


class StartFailed(RuntimeError):
    """A child died while the service was starting; the message shows its log."""


@dataclass
class Stack:
    """The processes of one `binderq up`, started in order, kept running by a supervisor,
    and stopped in reverse."""

    settings: Settings
    host: str
    port: int
    # Redis' files (None: a temporary folder, forgotten at the end: tests).
    data_dir: Path | None = None
    secrets: StoredSecrets = field(default_factory=StoredSecrets.new)
    lease: Lease | None = None  # told the ports, for the message a second start gets
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="binderq-up-")))
    supervisor: Supervisor = field(default_factory=lambda: Supervisor(
        say=lambda text: print(text, file=sys.stderr, flush=True)))
    firewalled: bool = False
    flower: bool = False  # also run Flower, Celery's monitor (binderq/flower.py)
    flower_port: int | None = None  # where it listens, once started

    @property
    def processes(self) -> list[tuple[str, subprocess.Popen]]:
        return self.supervisor.processes

    def start(self) -> None:
        """Start every process, check that each port it announces is served by its own
        child, wait for health, and have reconcile route servers that outlived a last run."""
        self._install_firewall()
        ports = [self.port]
        if not self.settings.redis_url:
            ports.append(self._start_redis())
        if self.settings.many_hosts and not self.settings.registry:
            ports.append(self._start_registry())
        api_port, proxy_api_port = free_port(), free_port()
        ports += [proxy_api_port, api_port]
        self.settings = self.settings.with_changes(
            proxy_api_url=f"http://127.0.0.1:{proxy_api_port}")
        api_target = f"http://127.0.0.1:{api_port}"
        self._start_child("proxy", lambda: start_proxy(
            self.port, proxy_api_port, self.settings.proxy_api_token,
            default_target=api_target, log_file=self.run_dir / "proxy.log", ip=self.host,
            die_with_parent=True),
            after_restart=lambda: self._proxy_back(api_target))
        self._start_child("web", self._spawner(
            "web", gunicorn_command(WSGI_APP, f"127.0.0.1:{api_port}")))
        for name, options in worker_processes(self.settings).items():
            self._start_child(name, self._spawner(name, _celery("worker", *options),
                                                  worker_host=worker_host(name)))
        self._start_child("beat", self._spawner(
            "beat", _celery("beat", "-s", str(self.run_dir / "celerybeat-schedule"))))
        if self.flower:
            self.flower_port = FLOWER_PORT if port_is_free(FLOWER_PORT) else free_port()
            self._start_child("flower", self._spawner(
                "flower", _celery(*flower_options(self.flower_port))))
        self._route_api(api_target)
        for port in (api_port, self.port):
            wait_until(lambda port=port: self._check_started() or self._serves_own_api(port),
                       timeout=60,
                       what=f"this binderq's API on port {port}")
        if self.lease is not None:
            self.lease.record(ports=ports)
        wait_until(self._healthy, timeout=90, what="the service's /api/health")
        self._queue_reconcile()

    def _install_firewall(self) -> None:
        why_not = host_firewall("install", self.settings.instance)
        self.firewalled = why_not is None
        if why_not:
            print(f"binderq up: WARNING: containers are not sealed from this host's services "
                  f"bound to all addresses ({why_not}); as root, run deploy/firewall.sh "
                  f"install {self.settings.instance}", file=sys.stderr)

    def _start_redis(self) -> int:
        """The embedded Redis, its data in the data directory, with the password kept there
        (given on stdin: `ps` never shows it); its port."""
        redis_port, password = free_port(), self.secrets.redis_password
        data = redis_dir(self.data_dir) if self.data_dir else self.run_dir
        self._start_child("redis", lambda: start_redis(
            redis_port, data_dir=str(data), log_file=self.run_dir / "redis.log",
            password=password, die_with_parent=True))
        self.settings = self.settings.with_changes(
            redis_url=redis_url_with_password(redis_port, password),
            # Its port changes at every start; its data (and so its servers) stays here.
            deployment=self.settings.deployment or deployment_id(self.settings.secret_key,
                                                                 f"file://{data}"))
        return redis_port

    def _start_registry(self) -> int:
        """Debian's docker-registry on loopback, its images in the data directory: with more
        than one Docker host, images reach each through it (docs/scaling.md)."""
        port = free_port()
        storage = (self.data_dir or self.run_dir) / REGISTRY_DIR
        self._start_child("registry", lambda: start_registry(
            port, storage=storage, config_dir=self.run_dir,
            log_file=self.run_dir / "registry.log", die_with_parent=True))
        self.settings = self.settings.with_changes(registry=f"127.0.0.1:{port}")
        return port

    def _start_child(self, name: str, start, after_restart=None) -> None:
        self.supervisor.start(Child(name, start, self.run_dir / f"{name}.log", after_restart))

    def _spawner(self, name: str, args: list[str], *, worker_host: str = ""):
        """A start function for a child of ours with args, logging to run_dir/name.log."""
        def spawn() -> subprocess.Popen:
            log = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 (the child's)
            env = self.settings.with_changes(worker_host=worker_host).to_env()
            with log:
                return subprocess.Popen(args, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=parent_death_signal())
        return spawn

    def _route_api(self, target: str) -> None:
        from binderq.bootstrap import build_proxy

        proxy = build_proxy(self.settings)
        for path in API_PATHS:
            proxy.add_route(path, target)

    def _proxy_back(self, api_target: str) -> None:
        """After the proxy restarted: its API routes, a check that the public port is its
        own, and a reconcile that routes every ready server again."""
        self._route_api(api_target)
        wait_until(lambda: self._serves_own_api(self.port), timeout=30,
                   what=f"this binderq's API on port {self.port}")
        self._queue_reconcile()

    def _serves_own_api(self, port: int) -> bool:
        """True once port answers with this start's API (it signs a random challenge with
        this start's key); PortTaken if something else answers there."""
        challenge = secrets.token_hex(16)
        try:
            answer = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5,
                                  headers={CHALLENGE_HEADER: challenge})
        except requests.RequestException:
            return False  # not listening yet
        if answer.headers.get(PROOF_HEADER) != deployment_proof(
                self.settings.deployment_key, challenge):
            raise PortTaken(port, f"answered {answer.status_code}, but not as this binderq "
                                  "up's API: another program (another binderq?) holds it")
        return True

    def _healthy(self) -> bool:
        self._check_started()
        try:
            return requests.get(f"{self.local_url}/api/health", timeout=3).status_code == 200
        except requests.RequestException:
            return False

    def _queue_reconcile(self) -> None:
        """Reconcile now rather than at beat's next turn: servers that outlived the last
        run, or a proxy restart, get their routes back."""
        try:
            requests.post(f"{self.local_url}/api/reconcile", timeout=10, headers={
                "Authorization": f"token {self.settings.operator_token}"}).raise_for_status()
        except requests.RequestException as error:
            print(f"binderq up: could not queue a reconcile ({error}); beat sends one within "
                  f"{self.settings.reconcile_interval:g} s", file=sys.stderr)

    @property
    def local_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def stage_demo(self) -> None:
        """Stage the notebook image as a public staging with a small pool, if the engine
        has the image."""
        image = self.settings.notebook_image
        if self._runtimes()[self.settings.hosts[0].name].image(image) is None:
            print(f"binderq: no demo: image {image} is not on the engine "
                  "(deploy/build-notebook-image.sh builds it)")
            return
        operator = {"Authorization": f"token {self.settings.operator_token}"}
        requests.put(
            f"{self.local_url}/api/stagings/{DEMO_STAGING}",
            json={"image": image, "public": True, "description": "Jupyter Notebook demo",
                  "resources": {"memory": "512m", "cpus": 1.0}},
            headers=operator, timeout=10).raise_for_status()
        requests.put(f"{self.local_url}/api/pools/{DEMO_STAGING}",
                     json={"size": DEMO_POOL_SIZE}, headers=operator,
                     timeout=10).raise_for_status()

    def announce(self) -> None:
        flower = (f"\n  Flower:         http://127.0.0.1:{self.flower_port}/"
                  if self.flower_port else "")
        print(f"""
binderq is up at {self.local_url}   (Ctrl-C stops it and every server it started)
  launch page:    {self.local_url}/
  dashboard:      {self.local_url}/admin/   (log in with the operator token)
  operator token: {self.settings.operator_token}
  API docs:       {self.local_url}/api/docs
  logs:           {self.run_dir}{flower}
Launch a notebook of the demo staging (kept warm: a pool of {DEMO_POOL_SIZE}): open
{self.local_url}/launch/{DEMO_STAGING} in a browser, or from a script:
  binderq launch {DEMO_STAGING} --url {self.local_url}
  curl -X POST {self.local_url}/api/stagings/{DEMO_STAGING}/servers
""", flush=True)

    def supervise(self) -> None:
        """Keep every child running until Ctrl-C or SIGTERM; GaveUp when one keeps dying."""
        while True:
            self.supervisor.check()
            time.sleep(0.5)

    def stop(self, *, remove_servers: bool = True) -> None:
        """Stop beat and the workers (so nothing starts anew), every server (unless
        remove_servers is False: they stay for the next start to adopt), then the rest."""
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second one must not cut this short
            signal.signal(signum, signal.SIG_IGN)
        try:
            if not self.processes:
                return
            print("binderq: stopping " + ("servers and processes" if remove_servers else
                                          "processes (servers keep running)") + " ...",
                  flush=True)
            self._stop_processes(lambda name: name == "beat" or name.startswith("worker-"))
            if remove_servers:
                self._stop_servers()
            self._stop_processes(lambda name: True)
        finally:
            self._remove_firewall_unless_guarding()

    def _remove_firewall_unless_guarding(self) -> None:
        """The chain goes with the containers it guarded, and stays while any runs."""
        if not self.firewalled or self._containers_left():
            return
        why_not = host_firewall("remove", self.settings.instance)
        self.firewalled = why_not is not None
        if why_not:
            print(f"binderq: could not remove the firewall chain: {why_not}", file=sys.stderr)

    def _containers_left(self) -> bool:
        try:
            return any(runtime.server_containers() for runtime in self._runtimes().values())
        except BinderqError:
            return True  # cannot tell: keep guarding

    def _runtimes(self) -> dict:
        """Each Docker host's runtime, by host name."""
        from binderq.bootstrap import build_runtime

        return {host.name: build_runtime(self.settings.with_changes(docker_host=host.url))
                for host in self.settings.hosts}

    def _stop_processes(self, which) -> None:
        for name, process in reversed(self.processes):
            if which(name):
                stop_process(process, timeout=15)
        self.supervisor.forget_exited()

    def _stop_servers(self) -> None:
        from binderq.bootstrap import build_proxy, build_store
        from binderq.services.servers import stop_server

        store = build_store(self.settings)
        runtimes, proxy = self._runtimes(), build_proxy(self.settings)
        first = self.settings.hosts[0].name
        try:
            for server in store.servers.active():
                stop_server(server.id, store=store, runtime=runtimes.get(
                    server.host or first, runtimes[first]), proxy=proxy)
        except BinderqError as error:
            print(f"binderq: could not stop every server cleanly: {error}", file=sys.stderr)
        for runtime in runtimes.values():
            try:
                runtime.remove_deployment()  # and containers whose record never reached Redis
            except BinderqError as error:
                print(f"binderq: could not remove every container: {error}", file=sys.stderr)

    def _check_started(self) -> None:
        """While starting, a child that dies is a failed start (StartFailed, with its log)."""
        for name, process in self.processes:
            if process.poll() is not None:
                raise StartFailed(f"{name} {exit_reason(process.returncode)} while starting; "
                                  f"its last log lines:\n{log_tail(self.run_dir / f'{name}.log')}")


def host_firewall(action: str, instance: str) -> str | None:
    """Install or remove binderq's iptables chain with deploy/firewall.sh (root only);
    None once done, else why it was not."""
    if os.geteuid() != 0:
        return "binderq up is not running as root"
    if shutil.which("iptables") is None:
        return "iptables is missing: apt-get install -y iptables"
    if not FIREWALL_SCRIPT.exists():
        return f"{FIREWALL_SCRIPT} is not there (an installed package has no deploy/)"
    result = subprocess.run(["bash", str(FIREWALL_SCRIPT), action, instance],
                            capture_output=True, text=True, check=False)
    return None if result.returncode == 0 else (result.stderr or result.stdout).strip()


def gunicorn_command(app: str, bind: str) -> list[str]:
    """How the API is served (binderq/gunicorn_conf.py says why)."""
    return [sys.executable, "-m", "gunicorn", "--config", "python:binderq.gunicorn_conf",
            "--bind", bind, app]


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", CELERY_APP, *args,
            "--loglevel", "INFO"]
