"""Cold launch: POST to a url that answers through the proxy, against raw `docker run`.

Both sides start the same image with the same limits and wait for the same readiness probe
(the notebook's api/status); they alternate, in one process, so that drift hits both alike.

    .venv/bin/python bench/cold_launch.py [--runs 10]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import NOTEBOOK_IMAGE, describe, operator, poll, stage, start_stack  # noqa: E402

from binderq.adapters.readiness import wait_until_ready as wait_for_notebook  # noqa: E402

TARGET_RATIO = 1.25
LIMITS = ["--memory", "512m", "--cpus", "1", "--pids-limit", "256"]


def raw_docker_run() -> float:
    """`docker run` of the notebook, then the same probe binderq uses; seconds."""
    token, name = secrets.token_hex(16), f"bench-raw-{secrets.token_hex(4)}"
    started = time.monotonic()
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", "127.0.0.1::8888", *LIMITS,
                    NOTEBOOK_IMAGE, "python3", "-m", "notebook", "--ip=0.0.0.0",
                    "--port=8888", "--no-browser", "--NotebookApp.base_url=/user/raw/",
                    f"--NotebookApp.token={token}"], check=True, capture_output=True)
    address = subprocess.run(["docker", "port", name, "8888/tcp"], check=True,
                             capture_output=True, text=True).stdout.split()[0]
    wait_for_notebook(f"http://{address}/user/raw/", token, timeout=60,
                      still_running=lambda: None)
    elapsed = time.monotonic() - started
    subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
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
        raw_docker_run(), binderq_launch(stack)  # warm both paths once, unmeasured
        raw, ours = [], []
        for _ in range(args.runs):
            raw.append(raw_docker_run())
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
