"""The `binderq` command: `binderq up` runs the whole service on one machine; the API verbs
(commands.py) speak to a running one."""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from pathlib import Path

import click

from binderq import __version__, commands
from binderq.adapters.data_dir import (
    DataDirUnusable,
    StoredSecrets,
    default_data_dir,
    forget_redis_data,
    load_secrets,
    prepare_data_dir,
)
from binderq.adapters.docker_engine import engine_id
from binderq.adapters.instance_lease import Lease, LeaseHeld, data_dir_lease, instance_lease
from binderq.domain.errors import BinderqError
from binderq.flower import FLOWER_PORT
from binderq.processes import (
    MissingProgram,
    PortTaken,
    proxy_binary,
    redis_server_binary,
    registry_binary,
)
from binderq.settings import Settings, SettingsError
from binderq.stack import (  # re-exported: the Procfile test, benchmarks and tests use them
    CELERY_APP,
    DEMO_STAGING,
    WORKER_PROCESSES,
    WSGI_APP,
    Stack,
    StartFailed,
    gunicorn_command,
)
from binderq.supervisor import GaveUp

__all__ = ["CELERY_APP", "WORKER_PROCESSES", "WSGI_APP", "Stack", "gunicorn_command", "main",
           "settings_for_up", "up"]


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
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="where Redis' data and the secrets are kept from one start to the next "
                   "(default: $XDG_DATA_HOME/binderq/<instance>, else "
                   "~/.local/share/binderq/<instance>)")
@click.option("--fresh", is_flag=True,
              help="start with no stagings, pools, builds or tokens (forget what the data "
                   "directory's Redis holds)")
@click.option("--flower", is_flag=True,
              help=f"also run Flower, Celery's monitor, on 127.0.0.1:{FLOWER_PORT}")
def up_command(host: str, port: int, demo: bool, data_dir: Path | None, fresh: bool,
               flower: bool) -> None:
    """Run the whole service on this machine until Ctrl-C or SIGTERM."""
    sys.exit(up(host, port, demo=demo, data_dir=data_dir, fresh=fresh, flower=flower))


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


def up(host: str, port: int, *, demo: bool = False, data_dir: Path | None = None,
       fresh: bool = False, flower: bool = False) -> int:
    """Run Redis, the proxy, the API, the workers and beat, restarting any that dies, until
    Ctrl-C or SIGTERM (then stop all, servers too) or a child that keeps dying (then stop
    the processes and leave readers' servers running for the next start to adopt)."""
    try:
        base = Settings.from_env(secret_required=False)
    except SettingsError as error:
        print(f"binderq: {error}", file=sys.stderr)
        return 2
    problems = missing_prerequisites(base)
    if problems:
        print("binderq up cannot start:", *(f"  - {p}" for p in problems), sep="\n",
              file=sys.stderr)
        return 1
    data_dir = (data_dir or default_data_dir(base.instance)).resolve()
    leases: list[Lease] = []
    try:
        leases = take_leases(base, data_dir, port)
        prepare_data_dir(data_dir)
        if fresh:
            forget_redis_data(data_dir)
        stored = load_secrets(data_dir)
        settings = settings_for_up(base, host, port, stored)
    except (LeaseHeld, DataDirUnusable, SettingsError, BinderqError, OSError) as error:
        print(f"binderq up: {error}", file=sys.stderr)
        release_all(leases)
        return 1
    stack = Stack(settings, host=host, port=port, data_dir=data_dir, secrets=stored,
                  lease=leases[0], flower=flower)
    try:
        return run_stack(stack, demo=demo)
    finally:
        release_all(leases)


def run_stack(stack: Stack, *, demo: bool) -> int:
    """Start, announce and supervise stack; stop it as the way it ended asks."""
    signal.signal(signal.SIGTERM, _interrupt)
    remove_servers = False
    try:
        stack.start()
        if demo:
            stack.stage_demo()
        stack.announce()
        stack.supervise()
        return 0
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop everything, as documented
        remove_servers = True
        return 0
    except GaveUp as error:
        print(f"binderq up: {error}\nbinderq up: stopping; readers' servers keep running for "
              f"the next start to adopt; logs are in {stack.run_dir}", file=sys.stderr)
        return 1
    except (TimeoutError, MissingProgram, PortTaken, StartFailed, BinderqError) as error:
        print(f"binderq up: {error}; logs are in {stack.run_dir}", file=sys.stderr)
        return 1
    finally:
        stack.stop(remove_servers=remove_servers)


def take_leases(settings: Settings, data_dir: Path, port: int) -> list[Lease]:
    """Own this instance on this engine, and the data directory, for as long as this
    process lives (the kernel releases both when it dies); LeaseHeld names the holder."""
    started_at = time.strftime("%Y-%m-%d %H:%M:%S %z")
    instance = instance_lease(engine_id(settings.docker_host), settings.instance)
    instance.acquire(started_at=started_at, ports=[port], data_dir=str(data_dir))
    try:
        return [instance, data_dir_lease(data_dir).acquire(started_at=started_at,
                                                              ports=[port])]
    except LeaseHeld:
        instance.release()
        raise


def release_all(leases: list[Lease]) -> None:
    for lease in leases:
        lease.release()


def settings_for_up(settings: Settings, host: str, port: int,
                    stored: StoredSecrets | None = None) -> Settings:
    """Fill what `binderq up` can choose itself: tokens and secret (from stored, kept in
    the data directory, else new), public url, launch auth, a key that proves this start's
    API, and that its own proxy is trusted to report client addresses. SettingsError if what
    was given is unusable (a short BINDERQ_SECRET_KEY, say)."""
    stored = stored or StoredSecrets.new()
    changes: dict[str, object] = {
        "proxy_api_token": settings.proxy_api_token or secrets.token_hex(16),
        "secret_key": settings.secret_key or stored.secret_key,
        "operator_token": settings.operator_token or stored.operator_token,
        "deployment_key": secrets.token_hex(32),
    }
    if "BINDERQ_PUBLIC_URL" not in os.environ:
        changes["public_url"] = f"http://{host}:{port}"
    if "BINDERQ_LAUNCH_AUTH" not in os.environ:
        changes["launch_auth"] = "open"
    if "BINDERQ_DEFAULT_STAGING" not in os.environ:
        changes["default_staging"] = DEMO_STAGING  # the tmpnb door serves the demo
    if "BINDERQ_LOG_FORMAT" not in os.environ:
        # Its logs are files in its run directory that a person reads; the default, json,
        # is for the Procfile's processes in production, whose output a collector parses.
        changes["log_format"] = "text"
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
    for host in settings.hosts:  # each host's engine (one, `local`, unless configured)
        try:
            build_runtime(settings.with_changes(docker_host=host.url)).ping(timeout=3)
        except BinderqError as error:
            where = host.url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
            named = f" (host {host.name})" if settings.many_hosts else ""
            problems.append(f"no Docker engine reachable at {where}{named} ({error}). Install "
                            "and start one (deploy/setup.sh does both), or set DOCKER_HOST")
    embedded_registry = settings.many_hosts and not settings.registry
    for find in (proxy_binary, *(() if settings.redis_url else (redis_server_binary,)),
                 *((registry_binary,) if embedded_registry else ())):
        try:
            find()
        except MissingProgram as error:
            problems.append(str(error))
    return problems


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
