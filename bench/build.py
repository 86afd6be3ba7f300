"""Builds: the latency of a cached build request, and binderq's build of a small repository
against `git clone` + `docker build` of the same repository by hand, alternating in one run.

Every build gets a repository of its own (a unique line in its Dockerfile), so that neither
side finds the other's layers in Docker's cache.

    .venv/bin/python bench/build.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import NOTEBOOK_IMAGE, describe, operator, percentile, start_stack  # noqa: E402

TARGET_RATIO = 1.15
TARGET_CACHED_P50_MS = 50
WORK = "RUN python3 -c 'print(sum(i * i for i in range(3 * 10**6)))'"


def make_repo(root: Path) -> tuple[Path, str]:
    """A small repository with its own Dockerfile; its path and file:// URL."""
    path = root / secrets.token_hex(4)
    path.mkdir()
    (path / "Dockerfile").write_text(
        f"FROM {NOTEBOOK_IMAGE}\nRUN echo {secrets.token_hex(8)} > /tmp/unique\n{WORK}\n"
        "COPY --chown=1000:1000 . /home/jovyan/\n")
    (path / "notebook.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, '
                                         '"nbformat_minor": 5}\n')
    for args in (["init", "-q", "-b", "main"], ["add", "."],
                 ["-c", "user.email=b@q", "-c", "user.name=b", "commit", "-qm", "env"]):
        subprocess.run(["git", "-C", str(path), *args], check=True)
    return path, f"file://{path}"


def by_hand(url: str, scratch: Path) -> float:
    tag = f"bench-by-hand:{secrets.token_hex(4)}"
    checkout = scratch / secrets.token_hex(4)
    started = time.monotonic()
    subprocess.run(["git", "clone", "-q", "--depth", "1", url, str(checkout)], check=True)
    subprocess.run(["docker", "build", "-q", "-t", tag, str(checkout)], check=True,
                   capture_output=True)
    elapsed = time.monotonic() - started
    subprocess.run(["docker", "rmi", "-f", tag], check=True, capture_output=True)
    return elapsed


def by_binderq(session: requests.Session, base: str, url: str) -> tuple[float, str]:
    """POST the build, then follow its live log (as a front end does) to `done`."""
    started = time.monotonic()
    build = session.post(f"{base}/api/builds", json={"repo": url, "ref": "main"}).json()
    finished = follow_to_done(session, f"{base}/api/builds/{build['id']}/logs")
    elapsed = time.monotonic() - started
    if finished["status"] != "succeeded":
        raise RuntimeError(finished["error"])
    return elapsed, finished["image"]


def follow_to_done(session: requests.Session, logs_url: str) -> dict:
    with session.get(logs_url, headers={"Accept": "text/event-stream"}, stream=True,
                     timeout=600) as stream:
        lines = stream.iter_lines(decode_unicode=True)
        for line in lines:
            if line == "event: done":
                return json.loads(next(lines)[len("data: "):])
    raise RuntimeError("the log stream ended without `done`")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="binderq-bench-build-"))
    stack = start_stack(f"benchb{secrets.token_hex(2)}", allow_local_repos=True)
    session = requests.Session()
    session.headers.update(operator(stack))
    base, images = stack.local_url, []
    try:
        hand, ours = [], []
        for _ in range(args.runs):
            hand.append(by_hand(make_repo(scratch)[1], scratch))
            seconds, image = by_binderq(session, base, make_repo(scratch)[1])
            ours.append(seconds)
            images.append(image)
        _, cached_url = make_repo(scratch)
        images.append(by_binderq(session, base, cached_url)[1])
        cached = []
        for _ in range(50):
            started = time.monotonic()
            answer = session.post(f"{base}/api/builds", json={"repo": cached_url, "ref": "main"})
            cached.append(time.monotonic() - started)
            assert answer.status_code == 200 and answer.json()["cached"], answer.text
    finally:
        stack.stop()
        for image in images:
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
    ratio = statistics.median(ours) / statistics.median(hand)
    cached_p50 = statistics.median(cached) * 1000
    print(describe("by hand: git clone + docker build", hand))
    print(describe("binderq: POST -> log stream done", ours))
    print(f"build ratio binderq/by hand (medians): {ratio:.3f} (target <= {TARGET_RATIO})")
    print(describe("cached build request", cached))
    print(f"cached request p50 {cached_p50:.1f} ms, p99 "
          f"{percentile(cached, 0.99) * 1000:.1f} ms (target p50 <= {TARGET_CACHED_P50_MS} ms)")
    return 0 if ratio <= TARGET_RATIO and cached_p50 <= TARGET_CACHED_P50_MS else 1


if __name__ == "__main__":
    sys.exit(main())
