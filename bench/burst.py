"""A classroom at once: N cold launches sent at the same moment, no pool, until every
notebook answers through the proxy; against N raw `docker run`s of the same image, with the
same limits and the same readiness probe, started at once in the same process.

Rounds alternate raw and binderq so that drift hits both alike; the figure is the median of
the rounds' wall times (first send to last answer), and its ratio.

    .venv/bin/python bench/burst.py [--sizes 1,10,30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    describe,
    operator,
    poll,
    raw_docker_run,
    remove_containers,
    stage,
    start_stack,
)

TARGETS = {1: 1.10, 10: 1.20, 30: 1.25}
MEMORY, CPUS, PIDS = "256m", 1.0, 256
LIMITS = ["--memory", MEMORY, "--cpus", str(CPUS), "--pids-limit", str(PIDS)]


def raw_launch() -> tuple[float, str]:
    return raw_docker_run(LIMITS, timeout=180)


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


def measure(stack, size: int, rounds: int) -> tuple[list[float], list[float]]:
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
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    stack = start_stack(f"burst{secrets.token_hex(2)}", max_servers=max(sizes) + 10)
    missed = []
    try:
        stage(stack, "burst", resources={"memory": MEMORY, "cpus": CPUS, "pids": PIDS})
        remove_containers(burst(1, raw_launch)[1])  # warm both paths once, unmeasured
        clean_binderq(stack, burst(1, lambda: binderq_launch(stack))[1])
        for size in sizes:
            raw, ours = measure(stack, size, args.rounds)
            ratio = statistics.median(ours) / statistics.median(raw)
            target = TARGETS.get(size)
            print(describe(f"{size} at once: docker run + probe", raw))
            print(describe(f"{size} at once: binderq", ours))
            print(f"{size} at once: median ratio binderq/raw {ratio:.3f}"
                  + (f" (target <= {target})" if target else ""), flush=True)
            if target and ratio > target:
                missed.append(size)
    finally:
        subprocess.run("docker ps -aq --filter name=bench-raw- | xargs -r docker rm -f",
                       shell=True, check=False, capture_output=True)
        stack.stop()
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
