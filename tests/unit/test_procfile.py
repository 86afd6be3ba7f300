"""The Procfile and `binderq up` run the same processes: the same Celery app and gunicorn
config, the same workers on the same queues, one beat, the proxy with the same options; and
every task's queue has a worker."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

from binderq import cli
from binderq.flower import FLOWER_PROCESS
from binderq.processes import proxy_options
from binderq.settings import Settings
from binderq.stack import worker_host, worker_processes
from binderq.tasks import TASKS, queue_of, queues

ROOT = Path(__file__).resolve().parents[2]


def procfile() -> dict[str, list[str]]:
    """Each Procfile process's command, split as the shell would."""
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = shlex.split(command)
    return processes


def celery_invocation(args: list[str]) -> tuple[str, str, list[str]]:
    """(app, subcommand, its options) of a `celery -A app subcommand ...` command."""
    start = args.index("-A")
    return args[start + 1], args[start + 2], args[start + 3:]


def option(args: list[str] | tuple[str, ...], name: str) -> str | None:
    return args[list(args).index(name) + 1] if name in args else None


def module_path(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def imported_names(path: Path) -> set[tuple[str, str]]:
    """(module, name) of each `from module import name` in a file."""
    tree = ast.parse(path.read_text())
    return {(node.module, alias.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) for alias in node.names}


def test_the_procfile_celery_entry_is_the_app_binderq_up_runs():
    apps = {celery_invocation(args)[0] for name, args in procfile().items()
            if "celery" in args}
    assert len(apps) == 1
    (entry,) = apps
    assert (cli.CELERY_APP, "app") in imported_names(module_path(entry))


def test_the_procfile_and_binderq_up_run_the_same_workers_on_the_same_queues():
    workers = {name: celery_invocation(args)[2] for name, args in procfile().items()
               if "celery" in args and celery_invocation(args)[1] == "worker"}
    assert set(workers) == set(cli.WORKER_PROCESSES)
    for name, options in cli.WORKER_PROCESSES.items():
        for flag in ("-Q", "--pool", "--concurrency", "-n"):
            assert option(workers[name], flag) == option(options, flag), (name, flag)
        args = procfile()[name]
        given = [arg for arg in args[:args.index("celery")] if arg.startswith("BINDERQ_")]
        host = worker_host(name)
        assert given == ([f"BINDERQ_WORKER_HOST={host}"] if host else []), name


def test_binderq_up_runs_one_launch_worker_per_host_on_its_queue():
    settings = Settings(docker_hosts="a=unix:///a.sock,b=tcp://10.0.0.2:2376")
    workers = worker_processes(settings)
    assert sorted(workers) == ["worker-build", "worker-launch-a", "worker-launch-b"]
    assert option(workers["worker-launch-b"], "-Q") == "launches.b,maintenance"
    assert worker_host("worker-launch-b") == "b" and worker_host("worker-build") == ""


def test_every_task_runs_on_a_queue_a_worker_consumes():
    for settings in (Settings(), Settings(docker_hosts="a=unix:///a.sock,b=unix:///b.sock")):
        consumed = {queue for options in worker_processes(settings).values()
                    for queue in option(options, "-Q").split(",")}
        assert {queue_of(spec, settings) for spec in TASKS} <= consumed
        assert set(queues(settings)) == consumed


def test_exactly_one_beat():
    beats = [name for name, args in procfile().items()
             if "celery" in args and celery_invocation(args)[1] == "beat"]
    assert beats == ["beat"]


def test_the_api_is_served_by_the_same_factory_and_gunicorn_config():
    web = procfile()["web"]
    up = cli.gunicorn_command(cli.WSGI_APP, "127.0.0.1:1")
    assert option(web, "--config") == option(up, "--config")
    module, variable = web[-1].split(":")
    factory_module, factory = cli.WSGI_APP.removesuffix("()").split(":")
    assert (factory_module, factory) in imported_names(module_path(module))
    assigned = [node for node in ast.walk(ast.parse(module_path(module).read_text()))
                if isinstance(node, ast.Assign) and node.targets[0].id == variable]
    assert ast.unparse(assigned[0].value) == f"{factory}()"


def test_the_procfile_proxy_has_the_options_binderq_up_gives_it():
    args = procfile()["proxy"]
    ours = proxy_options(8000, 8001, default_target="http://127.0.0.1:8081")
    given = args[args.index("configurable-http-proxy") + 1:]
    flags = {arg for arg in ours if arg.startswith("--")} - {"--log-level"}
    assert flags == {arg for arg in given if arg.startswith("--")}
    for flag in ("--ip", "--api-ip"):
        assert option(given, flag) == option(ours, flag) == "127.0.0.1"


def test_the_procfile_flower_is_the_one_binderq_up_runs_on_loopback():
    app, subcommand, options = celery_invocation(procfile()["flower"])
    assert (subcommand, *options) == FLOWER_PROCESS["flower"]
    assert "--address=127.0.0.1" in options


def test_binderq_up_serves_on_the_host_it_is_given_and_keeps_the_proxy_api_on_loopback():
    options = proxy_options(8000, 8001, ip="0.0.0.0")
    assert options[options.index("--ip") + 1] == "0.0.0.0"
    assert options[options.index("--api-ip") + 1] == "127.0.0.1"
