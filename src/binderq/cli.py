"""The `binderq` command: `binderq up` runs the whole service on one machine; the API verbs
(commands.py) speak to a running one."""

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

import click
import requests

from binderq import __version__, commands
from binderq.domain.errors import BinderqError
from binderq.processes import (
    MissingProgram,
    free_port,
    proxy_binary,
    redis_server_binary,
    redis_url_with_password,
    start_proxy,
    start_redis,
    stop_process,
    wait_until,
)
from binderq.settings import Settings, SettingsError
from binderq.tasks import BUILDS, LAUNCHES, MAINTENANCE

API_PATHS = ("/api", "/build", "/health", "/metrics")
WSGI_APP = "binderq.bootstrap:create_wsgi_app()"
CELERY_APP = "binderq.workers.main"
# The Procfile's workers, as `binderq up` runs them (tests/unit/test_procfile.py: they agree).
WORKER_PROCESSES = {
    "worker-launch": ("-Q", f"{LAUNCHES},{MAINTENANCE}", "--concurrency", "4", "-n", "launch@%h"),
    "worker-build": ("-Q", BUILDS, "--concurrency", "1", "-n", "build@%h"),
}
DEMO_STAGING = "notebook"
# binderq's iptables chain for br-+ and docker0 (docs/security.md).
FIREWALL_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "firewall.sh"
DEMO_POOL_SIZE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", message="%(version)s")
def binderq() -> None:
    """binderq: build, stage, launch and pool notebook servers.

    `binderq up` runs the whole service on this machine; the other verbs speak to a running
    service's API (--url or BINDERQ_URL, with the token in BINDERQ_TOKEN).
    """


@binderq.command("up")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address the proxy listens on")
@click.option("--port", type=int, default=8000, show_default=True,
              help="port the proxy listens on")
@click.option("--demo", is_flag=True,
              help=f"stage the notebook image as the public staging {DEMO_STAGING!r}")
def up_command(host: str, port: int, demo: bool) -> None:
    """Run the whole service on this machine until Ctrl-C."""
    sys.exit(up(host, port, demo=demo))


@binderq.command("reconcile")
@click.option("--adopt", is_flag=True, help="rebuild servers from labelled containers Redis "
                                            "does not know (after Redis was wiped)")
def reconcile_command(adopt: bool) -> None:
    """Repair Redis, Docker and the proxy now (BINDERQ_* settings)."""
    sys.exit(reconcile_now(adopt=adopt))


@binderq.command("version")
def version_command() -> None:
    """Print the version."""
    click.echo(__version__)


commands.register(binderq)


def main(argv: list[str] | None = None) -> int:
    """The `binderq` command; its exit code."""
    try:
        binderq.main(args=argv, prog_name="binderq", standalone_mode=True)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


def reconcile_now(*, adopt: bool) -> int:
    """Run one reconcile in this process and print the repairs it made."""
    from binderq.adapters.task_queue import CeleryTaskQueue
    from binderq.bootstrap import build_celery, build_proxy, build_runtime, build_store
    from binderq.services.lifecycle import reconcile

    try:
        settings = Settings.from_env()
        if not settings.redis_url:
            print("binderq reconcile: set BINDERQ_REDIS_URL (and the other BINDERQ_* "
                  "settings the service runs with)", file=sys.stderr)
            return 2
        store = build_store(settings)
        repairs = reconcile(store=store, runtime=build_runtime(settings),
                            proxy=build_proxy(settings),
                            queue=CeleryTaskQueue(build_celery(settings), store),
                            settings=settings, adopt=adopt or None)
    except (SettingsError, BinderqError) as error:
        print(f"binderq reconcile: {error}", file=sys.stderr)
        return 1
    if repairs is None:
        print("another reconcile is running; try again in a moment")
        return 1
    found = {name: sorted(value) for name, value in vars(repairs).items() if value}
    print("nothing to repair" if not found else
          "\n".join(f"{name}: {', '.join(map(str, value))}" for name, value in found.items()))
    return 0


def up(host: str, port: int, *, demo: bool = False) -> int:
    """Run Redis, the proxy, the API, the workers and beat until Ctrl-C; then stop all."""
    try:
        settings = settings_for_up(Settings.from_env(secret_required=False), host, port)
    except SettingsError as error:
        print(f"binderq: {error}", file=sys.stderr)
        return 2
    problems = missing_prerequisites(settings)
    if problems:
        print("binderq up cannot start:", *(f"  - {p}" for p in problems), sep="\n",
              file=sys.stderr)
        return 1
    stack = Stack(settings, host=host, port=port)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start()
        if demo:
            stack.stage_demo()
        stack.announce()
        return stack.supervise()
    except KeyboardInterrupt:
        return 0
    except (TimeoutError, MissingProgram, BinderqError) as error:
        print(f"binderq up: {error}; logs are in {stack.run_dir}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


def settings_for_up(settings: Settings, host: str, port: int) -> Settings:
    """Fill what `binderq up` can choose itself: tokens, secret, public url, launch auth,
    and that its own proxy is trusted to report client addresses. SettingsError if what was
    given is unusable (a short BINDERQ_SECRET_KEY, say)."""
    changes: dict[str, object] = {
        "proxy_api_token": settings.proxy_api_token or secrets.token_hex(16),
        "secret_key": settings.secret_key or secrets.token_hex(32),
        "operator_token": settings.operator_token or secrets.token_hex(24),
    }
    if "BINDERQ_PUBLIC_URL" not in os.environ:
        changes["public_url"] = f"http://{host}:{port}"
    if "BINDERQ_LAUNCH_AUTH" not in os.environ:
        changes["launch_auth"] = "open"
    if "BINDERQ_DEFAULT_STAGING" not in os.environ:
        changes["default_staging"] = DEMO_STAGING  # the tmpnb door serves the demo
    if "BINDERQ_TRUSTED_PROXIES" not in os.environ:
        # The API is reached through its own configurable-http-proxy, which appends the
        # client's address to X-Forwarded-For: the fair shares key on that, not on the proxy.
        changes["trusted_proxies"] = 1
    filled = settings.with_changes(**changes)
    filled.validate()
    return filled


def missing_prerequisites(settings: Settings) -> list[str]:
    """What must be installed or running before the service can start, and how to get it."""
    from binderq.bootstrap import build_runtime

    problems = []
    try:
        build_runtime(settings).ping(timeout=3)
    except BinderqError as error:
        where = settings.docker_host or os.environ.get("DOCKER_HOST") or \
            "unix:///var/run/docker.sock"
        problems.append(f"no Docker engine reachable at {where} ({error}). Install and start "
                        "one (deploy/setup.sh does both), or set DOCKER_HOST")
    for find in (proxy_binary, *(() if settings.redis_url else (redis_server_binary,))):
        try:
            find()
        except MissingProgram as error:
            problems.append(str(error))
    return problems


@dataclass
class Stack:
    """The processes of one `binderq up`, started in order and stopped in reverse."""

    settings: Settings
    host: str
    port: int
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="binderq-up-")))
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    firewalled: bool = False

    def start(self) -> None:
        why_not = host_firewall("install", self.settings.instance)
        self.firewalled = why_not is None
        if why_not:
            print(f"binderq up: WARNING: containers are not sealed from this host's services "
                  f"bound to all addresses ({why_not}); as root, run deploy/firewall.sh "
                  f"install {self.settings.instance}", file=sys.stderr)
        if not self.settings.redis_url:
            # Its own password for each run: other local users must not reach the state.
            redis_port, password = free_port(), secrets.token_hex(24)
            self._keep("redis", start_redis(redis_port, data_dir=str(self.run_dir),
                                            log_file=self.run_dir / "redis.log",
                                            password=password))
            self.settings = self.settings.with_changes(
                redis_url=redis_url_with_password(redis_port, password))
        api_port, proxy_api_port = free_port(), free_port()
        self.settings = self.settings.with_changes(
            proxy_api_url=f"http://127.0.0.1:{proxy_api_port}")
        api_target = f"http://127.0.0.1:{api_port}"
        self._keep("proxy", start_proxy(self.port, proxy_api_port,
                                        self.settings.proxy_api_token,
                                        default_target=api_target,
                                        log_file=self.run_dir / "proxy.log"))
        self._spawn("web", gunicorn_command(WSGI_APP, f"127.0.0.1:{api_port}"))
        for name, options in WORKER_PROCESSES.items():
            self._spawn(name, _celery("worker", *options))
        self._spawn("beat", _celery("beat", "-s", str(self.run_dir / "celerybeat-schedule")))
        self._route_api(api_target)
        wait_until(self._healthy, timeout=90, what="the service's /api/health")

    def _route_api(self, target: str) -> None:
        from binderq.bootstrap import build_proxy

        proxy = build_proxy(self.settings)
        for path in API_PATHS:
            proxy.add_route(path, target)

    def _healthy(self) -> bool:
        self._check_children()
        try:
            return requests.get(f"{self.local_url}/api/health", timeout=3).status_code == 200
        except requests.RequestException:
            return False

    @property
    def local_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def stage_demo(self) -> None:
        """Stage the notebook image as a public staging with a small pool, if the engine
        has the image."""
        from binderq.bootstrap import build_runtime

        image = self.settings.notebook_image
        if build_runtime(self.settings).image(image) is None:
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
        print(f"""
binderq is up at {self.local_url}   (Ctrl-C stops it and every server it started)
  operator token: {self.settings.operator_token}
  API docs:       {self.local_url}/api/docs
  logs:           {self.run_dir}
Launch a notebook of the demo staging (kept warm: a pool of {DEMO_POOL_SIZE}), then open its
url with ?token=<token>:
  curl -X POST {self.local_url}/api/stagings/{DEMO_STAGING}/servers
""", flush=True)

    def supervise(self) -> int:
        """Wait for Ctrl-C; if a process dies, say which and stop."""
        while True:
            try:
                self._check_children()
            except RuntimeError as error:
                print(f"binderq up: {error}; logs are in {self.run_dir}", file=sys.stderr)
                return 1
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop beat and the workers (so nothing starts anew), every server, then the rest."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        try:
            if not self.processes:
                return
            print("binderq: stopping servers and processes ...", flush=True)
            self._stop_processes(lambda name: name == "beat" or name in WORKER_PROCESSES)
            self._stop_servers()
            self._stop_processes(lambda name: True)
        finally:
            if self.firewalled:  # the chain goes with the containers it guarded
                why_not = host_firewall("remove", self.settings.instance)
                self.firewalled = why_not is not None
                if why_not:
                    print(f"binderq: could not remove the firewall chain: {why_not}",
                          file=sys.stderr)

    def _stop_processes(self, which) -> None:
        for name, process in reversed(self.processes):
            if which(name):
                stop_process(process, timeout=15)
        self.processes = [(n, p) for n, p in self.processes if p.poll() is None]

    def _stop_servers(self) -> None:
        from binderq.bootstrap import build_proxy, build_runtime, build_store
        from binderq.services.servers import stop_server

        store = build_store(self.settings)
        runtime, proxy = build_runtime(self.settings), build_proxy(self.settings)
        try:
            for server in store.servers.active():
                stop_server(server.id, store=store, runtime=runtime, proxy=proxy)
        except BinderqError as error:
            print(f"binderq: could not stop every server cleanly: {error}", file=sys.stderr)
        try:
            runtime.remove_instance()  # and containers whose record never reached Redis
        except BinderqError as error:
            print(f"binderq: could not remove every container: {error}", file=sys.stderr)

    def _check_children(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}")

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 (owned by the child)
        process = subprocess.Popen(args, env=self.settings.to_env(), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self._keep(name, process)

    def _keep(self, name: str, process: subprocess.Popen) -> None:
        self.processes.append((name, process))


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


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", CELERY_APP, *args,
            "--loglevel", "INFO"]


if __name__ == "__main__":
    sys.exit(main())
