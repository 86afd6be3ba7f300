"""A classroom at once: N cold launches sent at the same moment, no pool, until every
notebook answers through the proxy; against N raw `docker run`s of the same image, with the
same limits and the same readiness probe, started at once in the same process.

Rounds alternate raw and binderq so that drift hits both alike; the figure is the median of
the rounds' wall times (first send to last answer), and its ratio.

With --hosts 2, a second real dockerd joins (tests/integration/engines.py) and `binderq up`
spreads the servers over both engines through its registry; the raw runs are split over the
two engines alike. --engine-calls sets BINDERQ_ENGINE_CALLS (servers made at once per host).

    .venv/bin/python bench/burst.py [--sizes 1,10,30] [--rounds 3] [--hosts 1|2]
                                    [--engine-calls N]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import secrets
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))  # the tests' second engine

from common import (  # noqa: E402
    NOTEBOOK_IMAGE,
    describe,
    operator,
    poll,
    raw_docker_run,
    remove_containers,
    stage,
    start_stack,
)
from tests.integration.engines import second_engine  # noqa: E402

TARGETS = {1: 1.10, 10: 1.20, 30: 1.25}
MEMORY, CPUS, PIDS = "256m", 1.0, 256
LIMITS = ["--memory", MEMORY, "--cpus", str(CPUS), "--pids-limit", str(PIDS)]


class RawEngines:
    """Where the raw runs go: the first engine, or the engines in turn (--hosts 2); the
    image by id, which a second engine has only under its registry name."""

    def __init__(self, engines: list[str]) -> None:
        self.image = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}",
                                     NOTEBOOK_IMAGE], check=True, capture_output=True,
                                    text=True).stdout.strip()
        self._turns = itertools.cycle(engines)

    def launch(self) -> tuple[float, str]:
        return raw_docker_run(LIMITS, timeout=180, engine=next(self._turns), image=self.image)


def binderq_launch(stack) -> tuple[float, str]:
    """POST a launch, wait (GET ?wait=) until ready, then until its url answers; (seconds,
    server id). Each GET answers when the server's status changes: a client hears of ready
    at once without polling the API, as the launch page does."""
    base = stack.local_url
    started = time.monotonic()
    launched = requests.post(f"{base}/api/stagings/burst/servers", headers=operator(stack),
                             timeout=30)
    launched.raise_for_status()
    server = launched.json()
    auth = {"Authorization": f"token {server['token']}"}

    def ready_url():
        answer = requests.get(f"{base}/api/servers/{server['id']}", params={"wait": 20},
                              headers=auth, timeout=40)
        now = answer.json()
        if now["status"] == "failed":
            raise RuntimeError(now["error"])
        if "Retry-After" in answer.headers:
            time.sleep(float(answer.headers["Retry-After"]))
        return now["url"] if now["status"] == "ready" else None

    url = poll(ready_url, timeout=180, interval=0)
    poll(lambda: requests.get(f"{url}api/status", headers=auth, timeout=5).status_code == 200,
         timeout=30)
    return time.monotonic() - started, server["id"]


def burst(size: int, launch) -> tuple[float, list[str]]:
    """size launches at once; (seconds until the last answered, what each made)."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=size) as pool:
        results = list(pool.map(lambda _: launch(), range(size)))
    return time.monotonic() - started, [made for _, made in results]


def clean_binderq(stack, server_ids: list[str]) -> None:
    headers = operator(stack)
    for server_id in server_ids:
        requests.delete(f"{stack.local_url}/api/servers/{server_id}", headers=headers,
                        timeout=10)
    poll(lambda: all(requests.get(f"{stack.local_url}/api/servers/{i}", headers=headers,
                                  timeout=10).json()["status"] == "stopped"
                     for i in server_ids), timeout=180, interval=0.5)


def measure(stack, raw_launch, size: int, rounds: int) -> tuple[list[float], list[float]]:
    raw, ours = [], []
    for _ in range(rounds):
        seconds, names = burst(size, raw_launch)
        raw.append(seconds)
        remove_containers(names)
        seconds, server_ids = burst(size, lambda: binderq_launch(stack))
        ours.append(seconds)
        clean_binderq(stack, server_ids)
    return raw, ours


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,10,30")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", type=int, choices=(1, 2), default=1)
    parser.add_argument("--engine-calls", type=int, default=None)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with contextlib.ExitStack() as cleanup:
        engines = [""]
        changes = {"max_servers": max(sizes) + 10}
        if args.engine_calls is not None:
            changes["engine_calls"] = args.engine_calls
        if args.hosts == 2:
            engine_b = cleanup.enter_context(second_engine())
            engines.append(engine_b.url)
            changes["docker_hosts"] = f"a=unix:///var/run/docker.sock,b={engine_b.url}"
        stack = start_stack(f"burst{secrets.token_hex(2)}", **changes)
        cleanup.callback(stack.stop)
        cleanup.callback(remove_leftovers, engines)
        return run(stack, sizes, args.rounds, RawEngines(engines))


def run(stack, sizes: list[int], rounds: int, raw: RawEngines) -> int:
    """Each size's rounds, its figures printed; 1 if a target was missed."""
    stage(stack, "burst", resources={"memory": MEMORY, "cpus": CPUS, "pids": PIDS})
    # Warm both paths once, unmeasured: with two hosts, a launch on each (the second host
    # pulls the staged image from the registry before its first server).
    warm = len(stack.settings.hosts)
    clean_binderq(stack, burst(warm, lambda: binderq_launch(stack))[1])
    remove_containers(burst(warm, raw.launch)[1])
    missed = []
    for size in sizes:
        raw_seconds, ours = measure(stack, raw.launch, size, rounds)
        ratio = statistics.median(ours) / statistics.median(raw_seconds)
        target = TARGETS.get(size)
        print(describe(f"{size} at once: docker run + probe", raw_seconds))
        print(describe(f"{size} at once: binderq", ours))
        print(f"{size} at once: median ratio binderq/raw {ratio:.3f}"
              + (f" (target <= {target})" if target else ""), flush=True)
        if target and ratio > target:
            missed.append(size)
    return 1 if missed else 0


def remove_leftovers(engines: list[str]) -> None:
    for engine in engines:
        docker = f"docker -H {engine}" if engine else "docker"
        subprocess.run(f"{docker} ps -aq --filter name=bench-raw- | xargs -r {docker} rm -f",
                       shell=True, check=False, capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
