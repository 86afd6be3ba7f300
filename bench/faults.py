"""Faults and bad input against a real `binderq up`, as an operator meets them. A reader uses a
server through the proxy all along (its api/status, every 0.1 s); each fault is tried
--times times, and the table says what was lost (target: nothing), the longest the reader
could not reach the server, and how long until the service served again.

    .venv/bin/python bench/faults.py [--times 3]

Recovery is measured from the fault to: a task queued on the launch worker's queue done
(worker and Redis kills), the reader's url answering again (proxy kill, restart), the
server's record back in Redis as ready (Redis wiped), the answer (bad input).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import poll  # noqa: E402

from binderq.processes import free_port  # noqa: E402


@dataclass
class Reader:
    """Polls a server's api/status with its token; remembers the outages it saw."""

    url: str
    token: str
    outages: list[tuple[float, float]] = field(default_factory=list)
    _down_since: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Reader:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            if self.answers():
                if self._down_since is not None:
                    self.outages.append((self._down_since, now))
                    self._down_since = None
            elif self._down_since is None:
                self._down_since = now
            time.sleep(0.1)

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.url}api/status", params={"token": self.token},
                                timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def longest_outage_since(self, start: float) -> float:
        spans = [end - begin for begin, end in self.outages if end >= start]
        if self._down_since is not None:
            spans.append(time.monotonic() - self._down_since)
        return max(spans, default=0.0)

    def stop(self) -> None:
        self._stop.set()


class Deployment:
    """`binderq up --demo` in a subprocess, on free ports, with its own data directory."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.instance = f"faults{secrets.token_hex(2)}"
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BINDERQ_")}
        env.update(BINDERQ_INSTANCE=self.instance, XDG_RUNTIME_DIR=str(self.root))
        log = self.root / f"up-{time.time():.0f}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "binderq.cli", "up", "--port", str(self.port), "--demo",
             "--data-dir", str(self.root / "data")],
            env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        poll(lambda: "binderq is up" in log.read_text() or self.process.poll() is not None,
             timeout=180, interval=0.2)
        if self.process.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        self.token = re.search(r"operator token: (\S+)", log.read_text()).group(1)

    @property
    def operator(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def child(self, looks_like: str) -> psutil.Process:
        (found,) = [p for p in psutil.Process(self.process.pid).children()
                    if looks_like in " ".join(p.cmdline())]
        return found

    def redis(self) -> redis.Redis:
        server = self.child("redis-server")
        (port,) = {c.laddr.port for c in server.net_connections() if c.status == "LISTEN"}
        password = json.loads((self.root / "data" / "secrets.json").read_text())
        return redis.Redis(port=port, password=password["redis_password"])

    def worker_task_done(self) -> bool:
        """A reconcile queued now is done by the launch worker (its queue: maintenance)."""
        try:
            queued = requests.post(f"{self.base}/api/reconcile", headers=self.operator,
                                   timeout=5)
            if queued.status_code != 202:
                return False
            task = queued.json()["task_id"]
            return bool(poll(lambda: requests.get(
                f"{self.base}/api/tasks/{task}", headers=self.operator,
                timeout=5).json()["state"] == "SUCCESS", timeout=30, interval=0.1))
        except (requests.RequestException, TimeoutError, ValueError, KeyError):
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=120)


@dataclass
class Row:
    fault: str
    lost: list[str] = field(default_factory=list)
    outages: list[float] = field(default_factory=list)
    recoveries: list[float] = field(default_factory=list)

    def line(self) -> str:
        lost = "nothing" if not self.lost else "; ".join(sorted(set(self.lost)))
        return (f"| {self.fault} | {len(self.recoveries)} | {lost} | "
                f"{max(self.outages, default=0):.1f} s | "
                f"{statistics.median(self.recoveries):.1f} s / {max(self.recoveries):.1f} s |")


def launch(up: Deployment) -> tuple[str, str, str]:
    """A reader's server, ready: (id, url, token)."""
    server = requests.post(f"{up.base}/api/stagings/notebook/servers", timeout=30).json()
    auth = {"Authorization": f"token {server['token']}"}

    def ready():
        now = requests.get(f"{up.base}/api/servers/{server['id']}", headers=auth,
                           timeout=5).json()
        return now if now["status"] == "ready" else None

    return server["id"], poll(ready, timeout=180, interval=0.2)["url"], server["token"]


def check_nothing_lost(up: Deployment, reader: Reader, server_id: str, row: Row, *,
                       staging_kept: bool = True) -> None:
    record = requests.get(f"{up.base}/api/servers/{server_id}",
                          headers={"Authorization": f"token {reader.token}"}, timeout=10)
    if record.status_code != 200 or record.json()["status"] != "ready":
        row.lost.append(f"the server's record ({record.status_code})")
    if not poll(reader.answers, timeout=30, interval=0.2):
        row.lost.append("the reader's server")
    if staging_kept and requests.get(f"{up.base}/api/stagings/notebook", headers=up.operator,
                                     timeout=10).status_code != 200:
        row.lost.append("the staging")


def timed(fault, recovered, *, timeout: float = 180) -> float:
    fault()
    started = time.monotonic()
    poll(recovered, timeout=timeout, interval=0.1)
    return time.monotonic() - started


def kill(process: psutil.Process) -> None:
    process.send_signal(signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--times", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="binderq-faults-"))
    up = Deployment(root)
    up.start()
    server_id, url, token = launch(up)
    reader = Reader(url, token).start()
    rows = []
    try:
        faults = [
            ("kill -9 of the launch worker", lambda: kill(up.child("launch-local@")),
             up.worker_task_done),
            ("kill -9 of configurable-http-proxy",
             lambda: kill(up.child("configurable-http-proxy")), reader.answers),
            ("kill -9 of Redis", lambda: kill(up.child("redis-server")), up.worker_task_done),
        ]
        for name, fault, recovered in faults:
            rows.append(repeat(name, fault, recovered, up, reader, server_id, args.times))
        rows.append(restart(up, reader, server_id))
        # Last: a wipe loses what only Redis held (stagings, pools, builds, tokens); what
        # must not be lost is the running server, its url and its token.
        rows.append(repeat("Redis wiped (FLUSHALL)", lambda: up.redis().flushall(),
                           lambda: requests.get(f"{up.base}/api/servers/{server_id}",
                                                headers={"Authorization": f"token {token}"},
                                                timeout=5).status_code == 200,
                           up, reader, server_id, 1, staging_kept=False))
        rows.append(oversized_bodies(up, args.times * 10))
    finally:
        reader.stop()
        up.stop()
    print("\n| fault or bad input | times | lost | reader's longest outage | recovery "
          "(median / max) |\n|---|---|---|---|---|")
    print("\n".join(row.line() for row in rows))
    return 0 if all(not row.lost for row in rows) else 1


def repeat(name: str, fault, recovered, up: Deployment, reader: Reader, server_id: str,
           times: int, *, staging_kept: bool = True) -> Row:
    row = Row(name)
    for _ in range(times):
        started = time.monotonic()
        row.recoveries.append(timed(fault, recovered))
        check_nothing_lost(up, reader, server_id, row, staging_kept=staging_kept)
        row.outages.append(reader.longest_outage_since(started))
        time.sleep(2)
    print(row.line(), flush=True)
    return row


def restart(up: Deployment, reader: Reader, server_id: str) -> Row:
    """SIGKILL of `binderq up` itself, then a new start on the same data directory."""
    row = Row("kill -9 of binderq up, then start again")
    started = time.monotonic()
    up.process.send_signal(signal.SIGKILL)
    up.process.wait()
    up.start()
    poll(reader.answers, timeout=120, interval=0.1)
    row.recoveries.append(time.monotonic() - started)
    check_nothing_lost(up, reader, server_id, row)
    row.outages.append(reader.longest_outage_since(started))
    print(row.line(), flush=True)
    return row


def oversized_bodies(up: Deployment, times: int) -> Row:
    """PUTs of 4 MiB through the proxy: each must answer 413 in the API's error format."""
    row = Row("4 MiB body through the proxy")
    body = b'{"image": "' + b"x" * (4 * 1024**2) + b'"}'
    for _ in range(times):
        started = time.monotonic()
        answer = requests.put(f"{up.base}/api/stagings/big", data=body, timeout=30,
                              headers={**up.operator, "Content-Type": "application/json"})
        row.recoveries.append(time.monotonic() - started)
        if answer.status_code != 413:
            row.lost.append(f"answered {answer.status_code}")
    print(row.line(), flush=True)
    return row


if __name__ == "__main__":
    sys.exit(main())
