"""Cold launch: POST to a url that answers through the proxy, against raw `docker run`.

Both sides start the same image with the same limits and wait for the same readiness probe
(the notebook's api/status); they alternate, in one process, so that drift hits both alike.

    .venv/bin/python bench/cold_launch.py [--runs 10]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
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

TARGET_RATIO = 1.25
LIMITS = ["--memory", "512m", "--cpus", "1", "--pids-limit", "256"]


def raw_launch() -> float:
    """`docker run` of the notebook, then the same probe binderq uses; seconds."""
    elapsed, name = raw_docker_run(LIMITS)
    remove_containers([name])
    return elapsed


def binderq_launch(stack) -> float:
    """POST a launch, poll the server until ready, then until its url answers; seconds."""
    base = stack.local_url
    started = time.monotonic()
    launched = requests.post(f"{base}/api/stagings/bench/servers", headers=operator(stack),
                             timeout=10).json()
    auth = {"Authorization": f"token {launched['token']}"}
    server_url = f"{base}/api/servers/{launched['id']}"

    def ready_url():
        server = requests.get(server_url, headers=auth, timeout=10).json()
        if server["status"] == "failed":
            raise RuntimeError(server["error"])
        return server["url"] if server["status"] == "ready" else None

    url = poll(ready_url, timeout=60)
    poll(lambda: requests.get(f"{url}api/status", headers=auth, timeout=5).status_code == 200,
         timeout=30)
    elapsed = time.monotonic() - started
    requests.delete(server_url, headers=auth, timeout=10)
    poll(lambda: requests.get(server_url, headers=auth, timeout=10).json()["status"]
         == "stopped", timeout=60, interval=0.1)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    stack = start_stack(f"bench{secrets.token_hex(2)}")
    try:
        stage(stack, "bench", resources={"memory": "512m", "cpus": 1.0, "pids": 256})
        raw_launch(), binderq_launch(stack)  # warm both paths once, unmeasured
        raw, ours = [], []
        for _ in range(args.runs):
            raw.append(raw_launch())
            ours.append(binderq_launch(stack))
    finally:
        stack.stop()
    ratio = statistics.median(ours) / statistics.median(raw)
    print(describe("baseline: docker run + probe", raw))
    print(describe("binderq: POST -> url answers", ours))
    print(f"median overhead ratio binderq/baseline: {ratio:.3f} (target <= {TARGET_RATIO})")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
