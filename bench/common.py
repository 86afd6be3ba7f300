"""Shared helpers for binderq's benchmarks: a real stack, timing and figures."""

from __future__ import annotations

import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import requests

from binderq.adapters.readiness import wait_until_ready
from binderq.cli import Stack, settings_for_up
from binderq.processes import free_port
from binderq.settings import Settings

NOTEBOOK_IMAGE = os.environ.get("BINDERQ_NOTEBOOK_IMAGE", "binderq/notebook:bookworm")
REMOVE_AT_ONCE = 5


def start_stack(instance: str, **settings_changes) -> Stack:
    """The whole service, as `binderq up` runs it, on free ports with its own instance. A
    SIGTERM (a timeout, a kill) ends the benchmark through its cleanup, as Ctrl-C does: its
    servers, processes and firewall chain go (Python's default would skip `finally`)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    port = free_port()
    base = Settings(instance=instance, notebook_image=NOTEBOOK_IMAGE, **settings_changes)
    stack = Stack(settings_for_up(base, "127.0.0.1", port), host="127.0.0.1", port=port)
    stack.start()
    return stack


def operator(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"token {stack.settings.operator_token}"}


def stage(stack: Stack, name: str, **fields) -> None:
    url = f"{stack.local_url}/api/stagings/{name}"
    requests.put(url, json={"image": NOTEBOOK_IMAGE, **fields}, headers=operator(stack),
                 timeout=10).raise_for_status()
    poll(lambda: requests.get(url, headers=operator(stack), timeout=10).json()["status"]
         == "ready", timeout=60)


def poll(condition: Callable[[], object], *, timeout: float, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(interval)
    raise TimeoutError("condition not met")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def describe(name: str, seconds: list[float]) -> str:
    ms = [value * 1000 for value in seconds]
    return (f"{name:<34} n={len(ms):<4} median {statistics.median(ms):8.1f} ms   "
            f"p90 {percentile(ms, 0.9):8.1f} ms   p99 {percentile(ms, 0.99):8.1f} ms")


def raw_docker_run(limits: list[str], *, timeout: float = 60, engine: str = "",
                   image: str = NOTEBOOK_IMAGE) -> tuple[float, str]:
    """The baseline: `docker run` of the notebook with limits, then the probe binderq uses
    (the notebook's api/status with its token); (seconds, the container's name: remove it).
    engine: another engine's address (`docker -H`), as "engine|name" in the name."""
    token, name = secrets.token_hex(16), f"bench-raw-{secrets.token_hex(4)}"
    docker = ["docker", "-H", engine] if engine else ["docker"]
    started = time.monotonic()
    subprocess.run([*docker, "run", "-d", "--name", name, "-p", "127.0.0.1::8888", *limits,
                    image, "python3", "-m", "notebook", "--ip=0.0.0.0",
                    "--port=8888", "--no-browser", "--NotebookApp.base_url=/user/raw/",
                    f"--NotebookApp.token={token}"], check=True, capture_output=True)
    address = subprocess.run([*docker, "port", name, "8888/tcp"], check=True,
                             capture_output=True, text=True).stdout.split()[0]
    wait_until_ready(f"http://{address}/user/raw/", token, timeout=timeout,
                     still_running=lambda: None)
    return time.monotonic() - started, f"{engine}|{name}" if engine else name


def remove_containers(names: list[str]) -> None:
    """Remove raw_docker_run's containers, each on its engine."""
    by_engine: dict[str, list[str]] = {}
    for name in names:
        engine, _, container = name.rpartition("|")
        by_engine.setdefault(engine, []).append(container)
    for engine, containers in by_engine.items():
        docker = ["docker", "-H", engine] if engine else ["docker"]
        # A few at a time: thirty removed at once from one network deadlocked Debian's
        # dockerd 20.10.24 (moby/moby#46661, fixed after it), and every later call hung.
        for start in range(0, len(containers), REMOVE_AT_ONCE):
            subprocess.run([*docker, "rm", "-f", *containers[start:start + REMOVE_AT_ONCE]],
                           check=True, capture_output=True, timeout=120)
